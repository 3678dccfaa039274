package mux

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/tcpdriver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests play a hostile far end: they write crafted messages straight
// into Deliver, as the link would hand them over, and check that every
// limit holds and that memory stays within the configured caps.

// hostile is a far end with odd stream ids talking to a mux with even
// ones.
type hostile struct {
	t    *testing.T
	m    *Mux
	buf  []byte // messages not yet delivered
	ends []int  // where each of them ends in buf
	out  []byte // scratch for Fill
}

func newHostile(t *testing.T, cfg Config) *hostile {
	cfg.Logger = quiet()
	m := New(cfg)
	m.SessionStart(link.SessionInfo{Local: 1, Peer: 2})
	return &hostile{t: t, m: m, out: make([]byte, 32<<10)}
}

func (h *hostile) send(msgs ...[]byte) {
	for _, b := range msgs {
		h.buf = append(h.buf, b...)
		h.ends = append(h.ends, len(h.buf))
	}
}

// flush delivers what was sent in link-sized payloads of whole messages
// (one longer than a payload alone).
func (h *hostile) flush() error {
	defer func() { h.buf, h.ends = h.buf[:0], h.ends[:0] }()
	start := 0
	for i, end := range h.ends {
		last := i == len(h.ends)-1
		if !last && h.ends[i+1]-start <= 32<<10 {
			continue
		}
		if err := h.m.Deliver(h.buf[start:end]); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// drain takes everything the mux has to send, as a far end that reads.
func (h *hostile) drain() (n int) {
	for {
		k := fillN(h.m, h.out)
		if k == 0 {
			return n
		}
		n += k
	}
}

func dataMsg(sid uint32, body []byte) []byte { return withBody(header(nil, msgData, sid), body) }

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

const mib = 1 << 20

// A far end that opens stream after stream and fills each with all the
// credit it has, while the application takes the streams and never reads
// (a destination that does not read), must not make the mux hold more than
// its buffer budget.
func TestHostileOpenFloodMemoryBounded(t *testing.T) {
	const budget = 32 * mib
	cfg := Config{StreamWindow: 4 * mib, MaxStreams: 100000, MaxBuffered: budget}
	h := newHostile(t, cfg)
	var mu sync.Mutex
	var taken []*Stream
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			s, err := h.m.AcceptStream(ctx)
			if err != nil {
				return
			}
			s.Accept()
			mu.Lock()
			taken = append(taken, s)
			mu.Unlock()
		}
	}()
	chunk := bytes.Repeat([]byte{0xAB}, InitialWindow)
	before := heapInUse()
	const opens = 20000 // 1.25 GiB of data offered
	for i := range opens {
		sid := uint32(2*i + 1)
		h.send(openMessage(sid, Info{Dest: "10.0.0.1:80"}), dataMsg(sid, chunk))
		require.NoError(t, h.flush())
		if i%64 == 0 {
			h.drain()
		}
	}
	h.drain()
	after := heapInUse()
	h.m.mu.Lock()
	streams, reserved := len(h.m.streams), h.m.reserved
	buffered := 0
	for _, s := range h.m.streams {
		buffered += len(s.rbuf) - s.roff
	}
	h.m.mu.Unlock()
	grown := after - before
	t.Logf("%d opens with %d KiB each (%d MiB offered): %d streams live, %d MiB buffered, %d MiB reserved of a %d MiB budget; heap grew %.1f MiB",
		opens, InitialWindow>>10, opens*InitialWindow/mib, streams, buffered/mib, reserved/mib, budget/mib, float64(grown)/mib)
	assert.LessOrEqual(t, reserved, budget)
	assert.LessOrEqual(t, buffered, budget)
	assert.Equal(t, budget/InitialWindow, streams, "the budget, not MaxStreams, binds here")
	// The buffers plus the bookkeeping of the streams and the accept
	// queue: well under twice the budget.
	assert.Less(t, grown, int64(budget+8*mib), "heap grew %d bytes for a %d-byte budget", grown, budget)
	cancel()
	h.m.Close()
	<-done
}

// A far end that opens streams and resets them at once, over and over,
// while the application is still deciding (dialling) each one, must not
// make us hold more undecided streams, goroutines or dials, than
// MaxStreams.
func TestHostileOpenResetCycleBoundsUndecidedStreams(t *testing.T) {
	const maxStreams = 50
	h := newHostile(t, Config{MaxStreams: maxStreams})
	var handed atomic.Int64
	var mu sync.Mutex
	var pending []*Stream // the application holds these without deciding
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			s, err := h.m.AcceptStream(ctx)
			if err != nil {
				return
			}
			handed.Add(1)
			mu.Lock()
			pending = append(pending, s)
			mu.Unlock()
		}
	}()
	for i := range 5000 {
		sid := uint32(2*i + 1)
		h.send(openMessage(sid, Info{Dest: "10.0.0.1:80"}))
		require.NoError(t, h.flush())
		time.Sleep(time.Microsecond)
		h.send(resetMessage(sid, CodeClosed, "bye"))
		require.NoError(t, h.flush())
		h.drain()
	}
	require.Eventually(t, func() bool { return len(h.m.accepts) == 0 }, 5*time.Second, time.Millisecond)
	t.Logf("5000 open+reset cycles: %d streams handed to the application", handed.Load())
	assert.LessOrEqual(t, handed.Load(), int64(maxStreams))
	h.m.mu.Lock()
	assert.LessOrEqual(t, len(h.m.streams)+h.m.zombies, maxStreams)
	h.m.mu.Unlock()
	// Once the application decides, the slots come back.
	mu.Lock()
	for _, s := range pending {
		s.Reset(CodeTimeout, "gave up")
	}
	pending = nil
	mu.Unlock()
	h.m.mu.Lock()
	assert.Zero(t, h.m.zombies)
	h.m.mu.Unlock()
	h.send(openMessage(100001, Info{}))
	require.NoError(t, h.flush())
	require.Eventually(t, func() bool { return handed.Load() > 0 && h.m.NumStreams() == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	h.m.Close()
	<-done
}

// A far end that keeps opening streams beyond the limit and never takes
// our refusals makes them pile up: the mux gives the session up (a
// protocol error) once they pass MaxReplyQueue, and memory stays bounded
// until then.
func TestHostileRefusalsPileUpEndTheSession(t *testing.T) {
	h := newHostile(t, Config{MaxStreams: 10, MaxReplyQueue: 64 << 10})
	before := heapInUse()
	var err error
	opens := 0
	for i := 0; err == nil && i < 1000000; i++ {
		h.send(openMessage(uint32(2*i+1), Info{}))
		err = h.flush()
		opens++
	}
	grown := heapInUse() - before
	require.ErrorIs(t, err, errProtocol)
	t.Logf("refused opens never taken: session given up after %d opens (%v); heap grew %.2f MiB", opens, err, float64(grown)/mib)
	assert.Contains(t, err.Error(), "answers it does not take")
	assert.Less(t, grown, int64(4*mib))
	// A far end that takes the answers may go on being refused for ever.
	h2 := newHostile(t, Config{MaxStreams: 10, MaxReplyQueue: 64 << 10})
	for i := range 100000 {
		h2.send(openMessage(uint32(2*i+1), Info{}))
		require.NoError(t, h2.flush())
		if i%100 == 0 {
			h2.drain()
		}
	}
	assert.Equal(t, 10, h2.m.NumStreams())
}

// Endless listen requests make at most MaxListens listeners per session;
// the rest are refused.
func TestHostileListenFlood(t *testing.T) {
	var calls atomic.Int64
	h := newHostile(t, Config{MaxListens: 8, OnListen: func(ListenRequest) error {
		calls.Add(1)
		return nil
	}})
	before := runtime.NumGoroutine()
	for i := range 20000 {
		h.send(listenMessage(ListenRequest{Network: "tcp", Bind: "127.0.0.1:0", Tag: uint64(i)}))
		require.NoError(t, h.flush())
		h.drain()
	}
	require.Eventually(t, func() bool { return calls.Load() == 8 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, int64(8), calls.Load())
	assert.LessOrEqual(t, runtime.NumGoroutine(), before+1)
	// A new session serves new requests.
	h.m.SessionEnd(nil)
	h.m.SessionStart(link.SessionInfo{Local: 1, Peer: 3})
	h.send(listenMessage(ListenRequest{Network: "tcp", Bind: "127.0.0.1:0", Tag: 1}))
	require.NoError(t, h.flush())
	require.Eventually(t, func() bool { return calls.Load() == 9 }, 5*time.Second, time.Millisecond)
}

// Messages for streams that do not exist cost nothing: no answers, no
// memory.
func TestHostileUnknownStreamFlood(t *testing.T) {
	h := newHostile(t, Config{})
	before := heapInUse()
	for i := range 200000 {
		sid := uint32(2*i + 1)
		h.send(binary.AppendUvarint(header(nil, msgWindow, sid), 1<<31), header(nil, msgFin, sid),
			header(nil, msgAccept, sid+1), resetMessage(sid, CodeClosed, "x"), dataMsg(sid, []byte("data")))
		if len(h.buf) > 30<<10 {
			require.NoError(t, h.flush())
		}
	}
	require.NoError(t, h.flush())
	grown := heapInUse() - before
	t.Logf("1 million messages for unknown streams: heap grew %.2f MiB", float64(grown)/mib)
	assert.Zero(t, h.drain(), "nothing to answer")
	assert.Less(t, grown, int64(mib))
	assert.Zero(t, h.m.NumStreams())
}

// A DATA message longer than any credit resets its stream and is
// skipped; what follows it in the payload is read as usual. One that runs
// past the end of its payload breaks the protocol: messages never continue
// across payloads.
func TestHostileOversizeDataSkipped(t *testing.T) {
	h := newHostile(t, Config{StreamWindow: InitialWindow})
	h.send(openMessage(1, Info{}), openMessage(3, Info{}))
	require.NoError(t, h.flush())
	s1, err := h.m.AcceptStream(ctx(t))
	require.NoError(t, err)
	s3, err := h.m.AcceptStream(ctx(t))
	require.NoError(t, err)
	p := dataMsg(1, make([]byte, InitialWindow+1))
	p = append(p, dataMsg(3, []byte("still here"))...)
	require.NoError(t, h.m.Deliver(p))
	var re *ResetError
	_, err = s1.Read(make([]byte, 1))
	require.ErrorAs(t, err, &re)
	assert.Equal(t, CodeProtocol, re.Code)
	got := make([]byte, 10)
	_, err = io.ReadFull(s3, got)
	require.NoError(t, err)
	assert.Equal(t, "still here", string(got))

	// 16 MiB announced in a payload of a few bytes.
	msg := binary.AppendUvarint(header(nil, msgData, 3), 16*mib)
	assert.ErrorContains(t, h.m.Deliver(append(msg, "abc"...)), "runs past the end of its payload")
	assert.ErrorContains(t, h.m.Deliver(openMessage(5, Info{Dest: "x:1"})[:4]), "runs past the end of its payload")
}

// Data beyond credit resets the stream, however often the far end tries;
// the streams it reset before the application took them are never handed
// out.
func TestHostileDataBeyondCredit(t *testing.T) {
	h := newHostile(t, Config{})
	for i := range 100 {
		h.send(openMessage(1, Info{}), dataMsg(1, make([]byte, InitialWindow-10)), dataMsg(1, make([]byte, 11)))
		require.NoError(t, h.flush())
		h.m.mu.Lock()
		assert.Zero(t, len(h.m.streams), "round %d", i)
		assert.Zero(t, h.m.reserved, "round %d", i)
		h.m.mu.Unlock()
		out := h.out[:fillN(h.m, h.out)]
		assert.Contains(t, string(out), "peer sent beyond its credit", "round %d", i)
	}
	c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := h.m.AcceptStream(c)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// Windows grow for a stream whose reader keeps up, and not for one whose
// reader lags; the budget caps both.
func TestWindowGrowsForBusyStreamsOnly(t *testing.T) {
	a, b, _ := newPair(t, 16<<10, Config{StreamWindow: 4 * mib, MaxBuffered: 64 * mib})
	fast, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	slow, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	rf, err := b.AcceptStream(ctx(t))
	require.NoError(t, err)
	rs, err := b.AcceptStream(ctx(t))
	require.NoError(t, err)
	go func() { _, _ = fast.Write(make([]byte, 16*mib)); _ = fast.CloseWrite() }()
	go func() { _, _ = slow.Write(make([]byte, 4*mib)) }()
	n, err := io.Copy(io.Discard, rf)
	require.NoError(t, err)
	assert.Equal(t, int64(16*mib), n)
	b.mu.Lock()
	fastWin, slowWin := rf.target, rs.target
	b.mu.Unlock()
	t.Logf("after 16 MiB: busy stream's window %d KiB, unread stream's %d KiB", fastWin>>10, slowWin>>10)
	assert.Greater(t, fastWin, InitialWindow)
	assert.Equal(t, InitialWindow, slowWin)
}

// floodUpper is a hostile far end above a real link: it opens stream after
// stream and sends each its whole initial credit, as fast as the link
// takes it, and ignores what comes back.
type floodUpper struct {
	mu      sync.Mutex
	nextID  uint32
	left    int // bytes still to send on stream nextID
	opened  atomic.Int64
	offered atomic.Int64
}

func (u *floodUpper) SessionStart(s link.SessionInfo) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.nextID = 2
	if s.Local > s.Peer {
		u.nextID = 1
	}
}

func (u *floodUpper) SessionEnd(error) {}

func (u *floodUpper) Deliver([]byte) error { return nil }

func (u *floodUpper) Fill(p []byte, _ int) (int, link.Class) {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for len(p)-n > 64 {
		if u.left == 0 {
			msg := openMessage(u.nextID, Info{Dest: "10.0.0.1:80"})
			if len(msg) > len(p)-n {
				break
			}
			n += copy(p[n:], msg)
			u.left = InitialWindow
			u.opened.Add(1)
		}
		take := min(u.left, len(p)-n-16)
		h := binary.AppendUvarint(header(p[n:n], msgData, u.nextID), uint64(take))
		n += len(h)
		n += copy(p[n:], floodBytes[:take])
		u.left -= take
		u.offered.Add(int64(take))
		if u.left == 0 {
			u.nextID += 2
		}
	}
	return n, link.ClassBulk
}

var floodBytes = bytes.Repeat([]byte{0x5A}, 64<<10)

// A hostile far end over a real link on loopback TCP floods opens and
// data; the application takes every stream and never reads. The process's
// heap must stay within the mux's budget plus the link's own buffers.
func TestHostileLinkPeerMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a loopback link for seconds")
	}
	const budget = 32 * mib
	var victim *link.Link
	m := New(Config{Logger: quiet(), StreamWindow: mib, MaxStreams: 100000, MaxBuffered: budget,
		Notify: func() { victim.Notify() }})
	rec, err := tcpdriver.Listen("127.0.0.1:0", tcpdriver.ListenOptions{})
	require.NoError(t, err)
	victim = link.New(rec, m, link.Config{Logger: quiet()})
	flood := &floodUpper{}
	attacker := link.New(&tcpdriver.Connector{Addr: rec.Addr().String()}, flood, link.Config{Logger: quiet()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var taken atomic.Int64
	var held []*Stream
	before, rssBefore := heapInUse(), selfRSS()
	wg.Add(3)
	go func() {
		defer wg.Done()
		for {
			s, err := m.AcceptStream(ctx)
			if err != nil {
				return
			}
			s.Accept()
			held = append(held, s)
			taken.Add(1)
		}
	}()
	go func() { defer wg.Done(); _ = victim.Run(ctx) }()
	go func() { defer wg.Done(); _ = attacker.Run(ctx) }()

	var peak int64
	for start := time.Now(); time.Since(start) < 4*time.Second && flood.offered.Load() < 4<<30; {
		time.Sleep(250 * time.Millisecond)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, int64(ms.HeapAlloc))
	}
	after, rssAfter := heapInUse(), selfRSS()
	m.mu.Lock()
	streams, reserved := len(m.streams), m.reserved
	m.mu.Unlock()
	if rssBefore > 0 {
		t.Logf("process RSS %.1f MiB before, %.1f MiB after", float64(rssBefore)/mib, float64(rssAfter)/mib)
	}
	t.Logf("hostile link peer: %d opens, %.0f MiB offered in 4 s; %d streams taken, %d live, %d MiB reserved of %d MiB; live heap %.1f MiB before, %.1f MiB after (peak %.1f MiB with garbage not yet collected; both ends in this process)",
		flood.opened.Load(), float64(flood.offered.Load())/mib, taken.Load(), streams, reserved/mib, budget/mib,
		float64(before)/mib, float64(after)/mib, float64(peak)/mib)
	assert.Greater(t, flood.offered.Load(), int64(2*budget), "the flood got going")
	assert.LessOrEqual(t, reserved, budget)
	// Budget + the link's frames in flight and out of order (window ×
	// payload, both ends) + bookkeeping; at the peak, the collector's
	// slack on top.
	assert.Less(t, after-before, int64(budget+16*mib))
	assert.Less(t, peak-before, int64(2*budget+48*mib))
	cancel()
	m.Close()
	wg.Wait()
}

// selfRSS is this process's resident set in bytes, 0 where /proc is not.
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kib << 10
		}
	}
	return 0
}

// Opens beyond the accept backlog are refused with a reason while the
// application does not take them; once it does, opens succeed again.
func TestAcceptBacklogRefusesBeyond(t *testing.T) {
	h := newHostile(t, Config{AcceptBacklog: 5})
	for i := range 10 {
		h.send(openMessage(uint32(2*i+1), Info{}))
	}
	require.NoError(t, h.flush())
	assert.Equal(t, 5, h.m.NumStreams())
	out := string(h.out[:fillN(h.m, h.out)])
	assert.Equal(t, 5, strings.Count(out, "far end accept backlog full"))
	for range 5 {
		s, err := h.m.AcceptStream(ctx(t))
		require.NoError(t, err)
		s.Accept()
	}
	h.send(openMessage(101, Info{}))
	require.NoError(t, h.flush())
	s, err := h.m.AcceptStream(ctx(t))
	require.NoError(t, err)
	assert.Equal(t, uint32(101), s.ID())
}

// Both ends opening at once never get past MaxStreams at either end: an
// open beyond it fails here or is refused there with a reason.
func TestStreamLimitHoldsWithRacingOpens(t *testing.T) {
	const limit = 64
	a, b, _ := newPair(t, 1024, Config{MaxStreams: limit})
	for _, m := range []*Mux{a, b} {
		go func() {
			for {
				s, err := m.AcceptStream(context.Background())
				if err != nil {
					return
				}
				s.Accept()
			}
		}()
	}
	var wg sync.WaitGroup
	var opened, failed, refused atomic.Int64
	stop := make(chan struct{})
	var peak atomic.Int64
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, m := range []*Mux{a, b} {
				m.mu.Lock()
				n := int64(len(m.streams) + m.zombies)
				m.mu.Unlock()
				if n > peak.Load() {
					peak.Store(n)
				}
			}
		}
	}()
	for _, m := range []*Mux{a, b} {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					s, err := m.Open(ctx(t), Info{})
					if err != nil {
						failed.Add(1)
						continue
					}
					var re *ResetError
					if err := s.WaitAccepted(ctx(t)); errors.As(err, &re) && re.Code == CodeLimit {
						refused.Add(1)
						continue
					}
					opened.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	close(stop)
	t.Logf("400 opens from both ends at once: %d open, %d failed here, %d refused there; at most %d in a table (limit %d)",
		opened.Load(), failed.Load(), refused.Load(), peak.Load(), limit)
	assert.LessOrEqual(t, peak.Load(), int64(limit))
	assert.LessOrEqual(t, a.NumStreams(), limit)
	assert.LessOrEqual(t, b.NumStreams(), limit)
	assert.Equal(t, int64(400), opened.Load()+failed.Load()+refused.Load())
	assert.Positive(t, failed.Load()+refused.Load())
}
