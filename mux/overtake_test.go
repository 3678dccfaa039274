package mux

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sockmux/sockmux/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Interactive data may overtake the payload in flight (FillUrgent, for
// the link's preemption) only where that cannot reorder the message
// stream: these tests deliver the payloads in the order the link puts
// them on the line (the overtaking payload, then the one it overtook) and
// check that every byte arrives, once and in order.

// overtakePair is two muxes with a session, driven payload by payload.
func overtakePair(t *testing.T) (a, b *Mux) {
	a, b = New(Config{Logger: quiet()}), New(Config{Logger: quiet()})
	a.SessionStart(link.SessionInfo{Local: 2, Peer: 1})
	b.SessionStart(link.SessionInfo{Local: 1, Peer: 2})
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// busyStream opens a stream from a with a large write blocked in it, so
// that Fill always has bulk data, and delivers its OPEN to b.
func busyStream(t *testing.T, a, b *Mux) {
	bulk, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	go func() { _, _ = bulk.Write(make([]byte, 8<<20)) }()
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return bulk.inReady
	}, 5*time.Second, time.Millisecond)
	buf := make([]byte, 256)
	require.NoError(t, b.Deliver(buf[:fillN(a, buf)]))
}

// writeUrgent starts an interactive write on s and waits until the
// scheduler has it.
func writeUrgent(t *testing.T, a *Mux, s *Stream, data string) {
	go func() { _, _ = s.Write([]byte(data)) }()
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return s.inReady && s.interactive
	}, 5*time.Second, time.Millisecond)
}

// drain moves everything a has to send to b.
func drain(t *testing.T, a, b *Mux) {
	buf := make([]byte, 1024)
	for range 10000 {
		n := fillN(a, buf)
		if n == 0 {
			return
		}
		require.NoError(t, b.Deliver(buf[:n]))
	}
}

func acceptID(t *testing.T, b *Mux, id uint32) *Stream {
	for {
		s, err := b.AcceptStream(ctx(t))
		require.NoError(t, err)
		if s.ID() == id {
			return s
		}
	}
}

func readWithin(s *Stream, n int) (string, error) {
	_ = s.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, n)
	_, err := io.ReadFull(s, got)
	return string(got), err
}

// A stream's first interactive write must not overtake its own OPEN: the
// far end would drop the data as being for a stream it does not know.
func TestUrgentDataNeverOvertakesItsOpen(t *testing.T) {
	a, b := overtakePair(t)
	busyStream(t, a, b)
	s, err := a.Open(ctx(t), Info{Dest: "h:1"})
	require.NoError(t, err)
	held := make([]byte, 1024)
	held = held[:fillN(a, held)] // carries the OPEN, then bulk data
	require.True(t, bytes.Contains(held, openMessage(s.ID(), Info{Dest: "h:1"})))
	writeUrgent(t, a, s, "GET / HTTP/1.0\r\n")
	urgent := make([]byte, 256)
	urgent = urgent[:a.FillUrgent(urgent)]
	// On the line: the overtaking payload, then the one it overtook.
	require.NoError(t, b.Deliver(urgent))
	require.NoError(t, b.Deliver(held))
	drain(t, a, b)
	got, err := readWithin(acceptID(t, b, s.ID()), 16)
	require.NoError(t, err, "the stream's first bytes were lost")
	assert.Equal(t, "GET / HTTP/1.0\r\n", got)
}

// Nor may it overtake an OPEN still waiting to be sent.
func TestUrgentDataNeverOvertakesAQueuedOpen(t *testing.T) {
	a, b := overtakePair(t)
	busyStream(t, a, b)
	held := make([]byte, 1024)
	held = held[:fillN(a, held)] // bulk data only
	s, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	writeUrgent(t, a, s, "ls\n")
	urgent := make([]byte, 256)
	urgent = urgent[:a.FillUrgent(urgent)]
	require.NoError(t, b.Deliver(urgent))
	require.NoError(t, b.Deliver(held))
	drain(t, a, b)
	got, err := readWithin(acceptID(t, b, s.ID()), 3)
	require.NoError(t, err, "the stream's first bytes were lost")
	assert.Equal(t, "ls\n", got)
}

// A control message never continues across payloads: one longer than
// the budget still goes whole into the room Fill is offered, one longer
// than that room waits for the next payload; what overtakes a payload
// therefore always starts on a message boundary.
func TestControlMessagesStayWhole(t *testing.T) {
	a, b := overtakePair(t)
	busyStream(t, a, b)
	inter, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	drain(t, a, b) // inter's OPEN is across; bulk keeps Fill busy
	ri := acceptID(t, b, inter.ID())
	long := Info{Dest: strings.Repeat("d", 250) + ":1"}
	s, err := a.Open(ctx(t), long)
	require.NoError(t, err)
	open := openMessage(s.ID(), long)

	small := make([]byte, len(open)-1)
	n, class := a.Fill(small, len(small))
	assert.Equal(t, link.ClassBulk, class, "the OPEN does not fit: bulk data only")
	require.NoError(t, b.Deliver(small[:n]))

	held := make([]byte, 1024)
	n, _ = a.Fill(held, 100) // a budget shorter than the OPEN
	assert.GreaterOrEqual(t, n, len(open), "the OPEN went whole past the budget")
	assert.Equal(t, open, held[:len(open)])
	held = held[:n]
	writeUrgent(t, a, inter, "k")
	urgent := make([]byte, 256)
	urgent = urgent[:a.FillUrgent(urgent)]
	require.NotEmpty(t, urgent)
	require.NoError(t, b.Deliver(urgent))
	require.NoError(t, b.Deliver(held))
	drain(t, a, b)
	got, err := readWithin(ri, 1)
	require.NoError(t, err)
	assert.Equal(t, "k", got)
	rs := acceptID(t, b, s.ID())
	assert.Equal(t, long.Dest, rs.Info().Dest)
}

// No control message is longer than maxControl, so one always fits a
// payload whole; longer fields are refused or clipped.
func TestControlMessagesFitAPayload(t *testing.T) {
	host := strings.Repeat("h", 255)
	full := Info{Network: strings.Repeat("n", maxNameLen), Dest: host + ":65535", Entrance: 65535,
		Client: strings.Repeat("c", maxClientLen), Tag: 1<<64 - 1, Proto: strings.Repeat("p", maxNameLen),
		Service: strings.Repeat("s", maxNameLen)}
	require.NoError(t, full.check())
	assert.LessOrEqual(t, len(openMessage(1<<32-1, full)), maxControl)
	req := ListenRequest{Network: strings.Repeat("n", maxNameLen), Bind: host + ":65535", Tag: 1<<64 - 1}
	assert.LessOrEqual(t, len(listenResult(req, strings.Repeat("é", 500), true)), maxControl)
	assert.LessOrEqual(t, len(unlistenMessage(req)), maxControl)
	assert.LessOrEqual(t, len(resetMessage(1<<32-1, CodeRefused, strings.Repeat("x", 5000))), maxControl)
	assert.True(t, utf8.ValidString(clipText(strings.Repeat("é", 500))))
	assert.Equal(t, "short", clipText("short"))

	m := New(Config{Logger: quiet()})
	_, err := m.Open(context.Background(), Info{Dest: strings.Repeat("h", 300) + ":1"})
	assert.ErrorContains(t, err, "stream destination of 302 bytes (at most 261)")
	assert.ErrorContains(t, m.ListenRemote(ListenRequest{Bind: strings.Repeat("h", 300)}), "listen address of 300 bytes")
}

// Where it is safe, interactive data still overtakes bulk data.
func TestUrgentDataOvertakesBulk(t *testing.T) {
	a, b := overtakePair(t)
	busyStream(t, a, b)
	inter, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	drain(t, a, b)
	ri := acceptID(t, b, inter.ID())
	held := make([]byte, 1024)
	held = held[:fillN(a, held)]
	writeUrgent(t, a, inter, "k")
	require.True(t, a.Urgent())
	urgent := make([]byte, 256)
	urgent = urgent[:a.FillUrgent(urgent)]
	require.NotEmpty(t, urgent)
	require.NoError(t, b.Deliver(urgent))
	got, err := readWithin(ri, 1)
	require.NoError(t, err)
	assert.Equal(t, "k", got)
	require.NoError(t, b.Deliver(held))
}

// Streams opening, writing in small and large pieces, and half-closing,
// while the link cuts payloads short for interactive data whenever it
// can: every stream's bytes arrive whole and in order.
func TestOvertakingKeepsEveryStreamInOrder(t *testing.T) {
	for seed := range uint64(6) {
		a, b := overtakePair(t)
		r := rand.New(rand.NewPCG(seed, 7))
		const streams = 12
		want := make([][]byte, streams)
		got := make([][]byte, streams)
		var wg sync.WaitGroup
		readers := make(chan struct{})
		go func() {
			defer close(readers)
			var rg sync.WaitGroup
			for range streams {
				s, err := b.AcceptStream(ctx(t))
				if err != nil {
					return
				}
				rg.Add(1)
				go func() {
					defer rg.Done()
					data, _ := io.ReadAll(s)
					got[(s.ID()-1)/2] = data
				}()
			}
			rg.Wait()
		}()
		for i := range streams {
			s, err := a.Open(ctx(t), Info{Dest: strings.Repeat("h", r.IntN(255)) + ":1"})
			require.NoError(t, err)
			var chunks [][]byte
			for range 1 + r.IntN(20) {
				c := make([]byte, 1+r.IntN(3000))
				if r.IntN(2) == 0 {
					c = make([]byte, 1+r.IntN(40)) // interactive-sized
				}
				for j := range c {
					c[j] = byte(r.Uint32())
				}
				chunks = append(chunks, c)
				want[i] = append(want[i], c...)
			}
			pauses := r.IntN(3) == 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, c := range chunks {
					if pauses {
						time.Sleep(20 * time.Millisecond)
					}
					_, _ = s.Write(c)
				}
				_ = s.CloseWrite()
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		buf, ubuf := make([]byte, 2048), make([]byte, 256)
		preempted := 0
		for finished := false; !finished; {
			select {
			case <-done:
				finished = true
			default:
			}
			held := buf[:fillN(a, buf[:64+r.IntN(len(buf)-64)])]
			if len(held) == 0 {
				time.Sleep(time.Millisecond)
				continue
			}
			time.Sleep(time.Duration(r.IntN(2000)) * time.Microsecond) // the frame on the line
			if a.Urgent() {
				if u := ubuf[:a.FillUrgent(ubuf)]; len(u) > 0 {
					preempted++
					require.NoError(t, b.Deliver(u))
				}
			}
			require.NoError(t, b.Deliver(held))
		}
		drain(t, a, b)
		<-readers
		for i := range streams {
			require.True(t, bytes.Equal(want[i], got[i]), "seed %d stream %d: %d bytes sent, %d arrived", seed, i, len(want[i]), len(got[i]))
		}
		t.Logf("seed %d: %d payloads overtaken", seed, preempted)
	}
}
