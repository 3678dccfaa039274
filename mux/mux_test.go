package mux

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockmux/sockmux/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pump joins two muxes the way a link would: it pulls payloads of a given
// size from one and delivers them to the other, in order.
type pump struct {
	a, b     *Mux
	size     int
	wakeA    chan struct{}
	wakeB    chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
	errs     chan error
	payloads atomic.Int64
	tap      func(from *Mux, p []byte) // sees every payload
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newPair(t *testing.T, size int, cfg Config) (*Mux, *Mux, *pump) {
	t.Helper()
	cfg.Logger = quiet()
	p := &pump{size: size, wakeA: make(chan struct{}, 1), wakeB: make(chan struct{}, 1),
		stop: make(chan struct{}), errs: make(chan error, 2)}
	cfgA, cfgB := cfg, cfg
	cfgA.Notify = func() { signal(p.wakeA) }
	cfgB.Notify = func() { signal(p.wakeB) }
	a, b := New(cfgA), New(cfgB)
	p.a, p.b = a, b
	a.SessionStart(link.SessionInfo{Local: 2, Peer: 1})
	b.SessionStart(link.SessionInfo{Local: 1, Peer: 2})
	p.wg.Add(2)
	go p.run(a, b, p.wakeA)
	go p.run(b, a, p.wakeB)
	t.Cleanup(func() { close(p.stop); p.wg.Wait() })
	return a, b, p
}

func (p *pump) run(from, to *Mux, wake chan struct{}) {
	defer p.wg.Done()
	// Like the link: room for any message whole (at least maxControl),
	// payloads of size wanted.
	buf := make([]byte, max(p.size, maxControl))
	for {
		n, _ := from.Fill(buf, p.size)
		if n > 0 {
			p.payloads.Add(1)
			if p.tap != nil {
				p.tap(from, buf[:n])
			}
			if err := to.Deliver(buf[:n]); err != nil {
				p.errs <- err
				return
			}
			continue
		}
		select {
		case <-wake:
		case <-p.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestOpenEchoHalfClose(t *testing.T) {
	for _, size := range []int{7, 64, 447, 32 << 10} {
		a, b, _ := newPair(t, size, Config{})
		go func() {
			s, err := b.AcceptStream(ctx(t))
			if err != nil {
				return
			}
			s.Accept()
			_, _ = io.Copy(s, s) // echo until EOF, then half-close back
			_ = s.CloseWrite()
			_ = s.Close()
		}()
		info := Info{Network: "tcp", Dest: "example.org:80", Entrance: 8080, Client: "127.0.0.1:5555", Tag: 7, Proto: "socks"}
		s, err := a.Open(ctx(t), info)
		require.NoError(t, err)
		require.NoError(t, s.WaitAccepted(ctx(t)))
		data := bytes.Repeat([]byte("0123456789"), 20000)
		go func() { _, _ = s.Write(data); _ = s.CloseWrite() }()
		got, err := io.ReadAll(s)
		require.NoError(t, err)
		assert.Equal(t, data, got, "payload size %d", size)
		require.NoError(t, s.Close())
	}
}

func TestInfoCarried(t *testing.T) {
	a, b, _ := newPair(t, 40, Config{})
	info := Info{Network: "udp", Dest: "[2001:db8::1]:53", Entrance: 53, Client: "10.0.0.9:4444", Tag: 1 << 40, Proto: "http"}
	_, err := a.Open(ctx(t), info)
	require.NoError(t, err)
	s, err := b.AcceptStream(ctx(t))
	require.NoError(t, err)
	assert.Equal(t, info, s.Info())
	assert.True(t, s.Inbound())
	assert.Equal(t, uint32(1), s.ID()%2, "a's ids are odd (a has the larger session id)")
}

func TestResetReasonReachesOpener(t *testing.T) {
	a, b, _ := newPair(t, 447, Config{})
	go func() {
		s, err := b.AcceptStream(ctx(t))
		if err == nil {
			s.Reset(CodeRefused, "connection refused by 10.1.2.3:80")
		}
	}()
	s, err := a.Open(ctx(t), Info{Dest: "10.1.2.3:80"})
	require.NoError(t, err)
	err = s.WaitAccepted(ctx(t))
	var re *ResetError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, CodeRefused, re.Code)
	assert.True(t, re.Remote)
	assert.Contains(t, err.Error(), "connection refused by 10.1.2.3:80")
	_, err = s.Read(make([]byte, 1))
	assert.ErrorAs(t, err, &re)
	_, err = s.Write([]byte("x"))
	assert.ErrorAs(t, err, &re)
}

func TestSlowReaderStallsOnlyItsStream(t *testing.T) {
	a, b, _ := newPair(t, 1024, Config{})
	// Stream 1: nobody reads at the far end.
	s1, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	r1, err := b.AcceptStream(ctx(t))
	require.NoError(t, err)
	var wrote1 atomic.Int64
	go func() {
		chunk := make([]byte, 4096)
		for {
			n, err := s1.Write(chunk)
			wrote1.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	// Stream 2: a bulk transfer goes through regardless.
	s2, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	r2, err := b.AcceptStream(ctx(t))
	require.NoError(t, err)
	data := make([]byte, 2<<20)
	go func() { _, _ = s2.Write(data); _ = s2.CloseWrite() }()
	got, err := io.ReadAll(r2)
	require.NoError(t, err)
	assert.Len(t, got, len(data))
	// The stalled stream sent its window and no more.
	assert.LessOrEqual(t, wrote1.Load(), int64(InitialWindow))
	assert.GreaterOrEqual(t, wrote1.Load(), int64(InitialWindow-4096))
	// Its reader wakes up and everything is there.
	// (Reading grants credit, and the writer goes on: count what it had
	// written before.)
	buf := make([]byte, InitialWindow)
	sent := int(wrote1.Load())
	n, err := io.ReadFull(r1, buf[:sent])
	require.NoError(t, err)
	assert.Equal(t, sent, n)
}

func TestInteractiveOvertakesBulk(t *testing.T) {
	// Driven by hand, payload by payload, so the test sees the scheduler's
	// choices and not the goroutine scheduler's.
	a, b := New(Config{Logger: quiet()}), New(Config{Logger: quiet(), StreamWindow: 8 << 20})
	a.SessionStart(link.SessionInfo{Local: 2, Peer: 1})
	b.SessionStart(link.SessionInfo{Local: 1, Peer: 2})
	buf := make([]byte, 447)
	shuttle := func(from, to *Mux) int {
		n := fillN(from, buf)
		require.NoError(t, to.Deliver(buf[:n]))
		return n
	}
	bulk, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	inter, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	shuttle(a, b)
	_, err = b.AcceptStream(ctx(t))
	require.NoError(t, err)
	ri, err := b.AcceptStream(ctx(t))
	require.NoError(t, err)
	shuttle(b, a) // b's credit grants
	go func() { _, _ = bulk.Write(make([]byte, 4<<20)) }()
	waitReady := func(s *Stream) {
		require.Eventually(t, func() bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			return s.inReady
		}, 5*time.Second, time.Millisecond)
	}
	waitReady(bulk)
	for round := range 10 {
		for range 5 {
			require.Equal(t, len(buf), shuttle(a, b), "bulk fills whole payloads")
		}
		time.Sleep(time.Millisecond) // a keystroke right after the last: interactive all the same
		done := make(chan struct{})
		go func() { defer close(done); _, _ = inter.Write([]byte("PING")) }()
		waitReady(inter)
		n := fillN(a, buf)
		assert.True(t, bytes.Contains(buf[:n], []byte("PING")), "round %d: the next payload carries the interactive write", round)
		assert.Less(t, n, 32, "round %d: and nothing else: it crosses the line in a short frame", round)
		require.NoError(t, b.Deliver(buf[:n]))
		<-done
		got := make([]byte, 4)
		_, err := io.ReadFull(ri, got)
		require.NoError(t, err)
	}
	a.Close()
	b.Close()
}

func TestSessionEndResetsStreams(t *testing.T) {
	a, b, _ := newPair(t, 447, Config{})
	s, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	_, err = b.AcceptStream(ctx(t))
	require.NoError(t, err)
	a.SessionEnd(&link.PeerRestartedError{})
	_, err = s.Read(make([]byte, 1))
	var re *ResetError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, CodeSessionEnded, re.Code)
	assert.Contains(t, err.Error(), "peer restarted")
	// Open waits for the next session.
	c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = a.Open(c, Info{})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestManyStreams(t *testing.T) {
	const n = 10000
	a, b, _ := newPair(t, 32<<10, Config{MaxStreams: n, MaxBuffered: n * InitialWindow})
	go func() {
		for {
			s, err := b.AcceptStream(context.Background())
			if err != nil {
				return
			}
			s.Accept()
		}
	}()
	streams := make([]*Stream, n)
	for i := range streams {
		var err error
		streams[i], err = a.Open(ctx(t), Info{Dest: "h:1"})
		require.NoError(t, err)
	}
	for _, s := range streams {
		require.NoError(t, s.WaitAccepted(ctx(t)))
	}
	assert.Equal(t, n, a.NumStreams())
	// Every one of them still carries data.
	for _, i := range []int{0, n / 2, n - 1} {
		_, err := streams[i].Write([]byte("x"))
		require.NoError(t, err)
	}
	a.Close()
	b.Close()
}

func TestConcurrentChecksums(t *testing.T) {
	a, b, _ := newPair(t, 1500, Config{})
	go func() {
		for {
			s, err := b.AcceptStream(context.Background())
			if err != nil {
				return
			}
			s.Accept()
			go func() {
				h := sha256.New()
				_, _ = io.Copy(h, s)
				_, _ = s.Write(h.Sum(nil))
				_ = s.CloseWrite()
				_ = s.Close()
			}()
		}
	}()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 0))
			data := make([]byte, 1000+r.IntN(200000))
			for j := range data {
				data[j] = byte(r.UintN(256))
			}
			s, err := a.Open(ctx(t), Info{})
			if !assert.NoError(t, err) {
				return
			}
			_, err = s.Write(data)
			assert.NoError(t, err)
			assert.NoError(t, s.CloseWrite())
			sum, err := io.ReadAll(s)
			assert.NoError(t, err)
			want := sha256.Sum256(data)
			assert.Equal(t, want[:], sum)
			assert.NoError(t, s.Close())
		}()
	}
	wg.Wait()
	assert.Eventually(t, func() bool { return a.NumStreams() == 0 && b.NumStreams() == 0 }, 5*time.Second, 10*time.Millisecond)
}

func TestProtocolErrors(t *testing.T) {
	m := New(Config{Logger: quiet()})
	m.SessionStart(link.SessionInfo{Local: 2, Peer: 1})
	// Our own parity (odd) from the peer.
	err := m.Deliver(openMessage(3, Info{}))
	assert.ErrorIs(t, err, errProtocol)
	assert.ErrorIs(t, m.Deliver([]byte{0x7f, 1}), errProtocol)
	// The same stream opened twice.
	require.NoError(t, m.Deliver(openMessage(4, Info{})))
	assert.ErrorIs(t, m.Deliver(openMessage(4, Info{})), errProtocol)
	// A message cut in two payloads is not: messages never continue
	// across payloads.
	msg := openMessage(6, Info{Dest: "host:1"})
	assert.ErrorIs(t, m.Deliver(msg[:3]), errProtocol)
	require.NoError(t, m.Deliver(msg))
	// Data beyond credit resets the stream.
	big := make([]byte, InitialWindow+1)
	require.NoError(t, m.Deliver(withBody(header(nil, msgData, 4), big)))
	assert.Equal(t, 1, m.NumStreams())
	// Random garbage never panics.
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		g := make([]byte, r.IntN(64))
		for i := range g {
			g[i] = byte(r.UintN(256))
		}
		m2 := New(Config{Logger: quiet()})
		m2.SessionStart(link.SessionInfo{Local: 2, Peer: 1})
		_ = m2.Deliver(g)
	}
}

func TestDeadlines(t *testing.T) {
	a, b, _ := newPair(t, 447, Config{})
	s, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	_, err = b.AcceptStream(ctx(t))
	require.NoError(t, err)
	require.NoError(t, s.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err = s.Read(make([]byte, 1))
	assert.True(t, errors.Is(err, errDeadline()))
}

func errDeadline() error { return os.ErrDeadlineExceeded }

// TestInteractiveBucket: small writes count as interactive however close
// together while a stream's volume is low (an echo, a shell), and as bulk
// once it writes at a real rate, whatever the size of its writes.
func TestInteractiveBucket(t *testing.T) {
	var s Stream
	now := time.Unix(0, 0)
	for i := range 200 { // one byte every 5 ms: 200 B/s
		assert.True(t, s.takeInteractive(1, now), "echo write %d", i)
		now = now.Add(5 * time.Millisecond)
	}
	assert.False(t, s.takeInteractive(interactiveMax+1, now), "a large write is bulk")
	n := 0
	for s.takeInteractive(100, now) { // 100-byte writes back to back
		n++
		now = now.Add(100 * time.Microsecond)
	}
	assert.LessOrEqual(t, n, interactiveBucket/100+1, "a stream writing back to back empties its bucket")
	for range 100 {
		assert.False(t, s.takeInteractive(100, now), "and stays bulk while it keeps writing")
		now = now.Add(time.Millisecond)
	}
	now = now.Add(time.Second)
	assert.True(t, s.takeInteractive(100, now), "after a quiet second it is interactive again")
	assert.False(t, s.takeInteractive(4096, now), "a paste is bulk")
	now = now.Add(100 * time.Millisecond)
	assert.False(t, s.takeInteractive(1, now), "and the keystroke right after it too")
	now = now.Add(time.Second)
	assert.True(t, s.takeInteractive(1, now), "until the stream was quiet for a while")
}

// fillN fills p from m and returns the payload's length.
func fillN(m *Mux, p []byte) int {
	n, _ := m.Fill(p, len(p))
	return n
}
