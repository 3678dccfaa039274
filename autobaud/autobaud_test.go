package autobaud

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/internal/testutil"
)

// world is a fake serial line with a link on it: bytes (and good frames)
// cross only while both ends' ports run at the same speed, at most cap;
// otherwise they wait, as the link's ARQ makes them wait, and arrive once
// the speeds agree again.
type world struct {
	mu      sync.Mutex
	cap     int
	ports   [2]*fakePort
	frames  [2]uint64
	bad     [2]uint64
	badOver int // above this rate, bad frames pile up at the leader
	serves  [2]bool
	// drop, when set, sees each message written and loses it if it says
	// so: the link gave up on it (which a real link never does; a message
	// the deadlines must survive).
	drop func(m []byte) bool
	// blockWrites makes a write wait while the line carries nothing, as
	// a link's does once its window is full of frames the far end, at
	// another speed, never acknowledges.
	blockWrites bool
}

func (w *world) ok() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	a, b := w.ports[0].actual, w.ports[1].actual
	return a == b && a <= w.cap
}

type fakePort struct {
	w       *world
	speed   int // as set
	actual  int // as the line sees it (deaf: stays)
	refuse  map[int]bool
	deaf    bool // SetSpeed "succeeds" but the line keeps the old speed
	sets    int
	setRate []int
}

func (p *fakePort) Speed() int {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	return p.speed
}

func (p *fakePort) SetSpeed(baud int) error {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	if p.refuse[baud] {
		return errors.New("refused")
	}
	p.speed = baud
	if !p.deaf {
		p.actual = baud
	}
	p.sets++
	return nil
}

type fakeLine struct {
	w    *world
	side int
}

func (l fakeLine) SetLineRate(r int) error {
	l.w.mu.Lock()
	l.w.ports[l.side].setRate = append(l.w.ports[l.side].setRate, r)
	l.w.mu.Unlock()
	return nil
}

func (l fakeLine) Counters() Counters {
	ok := l.w.ok()
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	if ok {
		l.w.frames[l.side] += 10
		if l.w.badOver > 0 && l.w.ports[l.side].actual > l.w.badOver {
			l.w.bad[l.side] += 5
		}
	}
	return Counters{FramesIn: l.w.frames[l.side], FramesOut: l.w.frames[l.side], FramesBad: l.w.bad[l.side]}
}

func (l fakeLine) Up() bool               { return true }
func (l fakeLine) UpSince() time.Time     { return time.Now().Add(-time.Hour) }
func (l fakeLine) Leader() (bool, bool)   { return l.side == 0, true }
func (l fakeLine) PeerServes(string) bool { return l.w.serves[1-l.side] }
func (l fakeLine) RTT() time.Duration     { return time.Millisecond }
func (w *world) line(side int) fakeLine   { return fakeLine{w, side} }
func (w *world) port(side int) *fakePort  { return w.ports[side] }
func (w *world) rate(side int) int        { return w.port(side).Speed() }
func newWorld(cap, start int) *world {
	w := &world{cap: cap, serves: [2]bool{true, true}}
	for i := range w.ports {
		w.ports[i] = &fakePort{w: w, speed: start, actual: start, refuse: map[int]bool{}}
	}
	return w
}

// fakeStream is one end of a reliable stream over the world.
type fakeStream struct {
	w      *world
	mu     *sync.Mutex
	in     *bytes.Buffer // what the far end wrote, not yet delivered
	out    *bytes.Buffer
	closed *bool
}

func streamPair(w *world) (a, b *fakeStream) {
	var mu sync.Mutex
	ab, ba := new(bytes.Buffer), new(bytes.Buffer)
	closed := false
	return &fakeStream{w, &mu, ba, ab, &closed}, &fakeStream{w, &mu, ab, ba, &closed}
}

func (s *fakeStream) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		if *s.closed {
			s.mu.Unlock()
			return 0, io.EOF
		}
		if s.in.Len() > 0 && s.w.ok() {
			n, _ := s.in.Read(p)
			s.mu.Unlock()
			return n, nil
		}
		s.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

func (s *fakeStream) Write(p []byte) (int, error) {
	for {
		s.w.mu.Lock()
		block := s.w.blockWrites
		s.w.mu.Unlock()
		s.mu.Lock()
		closed := *s.closed
		s.mu.Unlock()
		if !block || closed || s.w.ok() {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if *s.closed {
		return 0, io.ErrClosedPipe
	}
	s.w.mu.Lock()
	drop := s.w.drop
	s.w.mu.Unlock()
	if drop != nil && drop(p) {
		return len(p), nil
	}
	return s.out.Write(p)
}

func (s *fakeStream) Close() error {
	s.mu.Lock()
	*s.closed = true
	s.mu.Unlock()
	return nil
}

func quick(rates []int, log *slog.Logger) Config {
	return Config{Start: 115200, Rates: rates, SwitchDelay: 20 * time.Millisecond, VerifyTimeout: 300 * time.Millisecond,
		ReadyTimeout: 500 * time.Millisecond, Silence: 400 * time.Millisecond, Retry: 10 * time.Second,
		DegradeWindow: 200 * time.Millisecond, Settle: 50 * time.Millisecond, Logger: log}
}

// pair runs a leader (0) and a follower (1) over w until the test ends.
func pair(t *testing.T, w *world, cfgA, cfgB Config) (a, b *Controller) {
	t.Helper()
	b = New(cfgB, w.port(1), w.line(1), nil)
	a = New(cfgA, w.port(0), w.line(0), func(context.Context) (io.ReadWriteCloser, error) {
		x, y := streamPair(w)
		b.Attach(y)
		return x, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range []*Controller{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return a, b
}

func waitRates(t *testing.T, w *world, want int, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return w.rate(0) == want && w.rate(1) == want }, within, 5*time.Millisecond,
		"rates %d and %d, want %d", w.rate(0), w.rate(1), want)
}

var ladder = []int{9600, 115200, 230400, 460800, 921600, 1000000}

// TestClimbToCap: the ends climb one rate at a time to the fastest the
// line carries, fall back from the one above, and stay.
func TestClimbToCap(t *testing.T) {
	for _, cap := range []int{921600, 230400} {
		var logs testutil.LogBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		w := newWorld(cap, 115200)
		a, b := pair(t, w, quick(ladder, log), quick(ladder, log))
		waitRates(t, w, cap, 5*time.Second)
		// The rate above is tried, fails and is given up at both ends.
		require.Eventually(t, func() bool { return a.Status().Fallbacks >= 1 && b.Status().Fallbacks >= 1 }, 5*time.Second, 5*time.Millisecond)
		time.Sleep(300 * time.Millisecond)
		assert.Equal(t, cap, w.rate(0))
		assert.Equal(t, cap, w.rate(1))
		assert.Equal(t, cap, a.Status().Rate)
		assert.Contains(t, logs.String(), "autobaud: rates both ends offer: 9600 115200 230400 460800 921600 1000000")
		assert.Contains(t, logs.String(), "baud verified both ways in")
		assert.Contains(t, logs.String(), "back to ")
		assert.Regexp(t, `^\d+ baud \(auto: verified both ways, \d steps?; then no verified traffic at \d+ baud within 300ms, fell back\)$`, a.Status().String())
		w.mu.Lock()
		assert.Equal(t, cap/10, w.ports[0].setRate[len(w.ports[0].setRate)-1], "the link told the rate in bytes per second")
		w.mu.Unlock()
	}
}

// TestOffersIntersect: a rate one end does not offer is never tried, and
// the climb stops below it.
func TestOffersIntersect(t *testing.T) {
	w := newWorld(4000000, 115200)
	a, _ := pair(t, w, quick(ladder, nil), quick([]int{115200, 230400, 921600}, nil))
	// 460800 is not offered by B: after 230400 the next common rate is
	// 921600.
	waitRates(t, w, 921600, 3*time.Second)
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, 921600, w.rate(0))
	assert.Zero(t, a.Status().Fallbacks)
}

// TestPortRefusesAtSwitch: a port that refuses a rate it offered puts
// back the old one, the other end falls back on its deadline, and the
// rate is held off.
func TestPortRefusesAtSwitch(t *testing.T) {
	w := newWorld(4000000, 115200)
	w.ports[1].refuse[460800] = true
	a, b := pair(t, w, quick(ladder, nil), quick(ladder, nil))
	waitRates(t, w, 230400, 3*time.Second)
	require.Eventually(t, func() bool { return a.Status().Fallbacks >= 1 }, 3*time.Second, 5*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	assert.Equal(t, 230400, w.rate(0))
	assert.Equal(t, 230400, w.rate(1))
	assert.Equal(t, 230400, b.Status().Rate)
}

// TestDeafSwitchFallsBack: one end's switch does not take (its port
// stays at the old speed while saying it switched): nothing verifies and
// both ends go back by their deadlines.
func TestDeafSwitchFallsBack(t *testing.T) {
	w := newWorld(4000000, 115200)
	w.ports[1].deaf = true
	a, b := pair(t, w, quick(ladder, nil), quick(ladder, nil))
	require.Eventually(t, func() bool { return a.Status().Fallbacks >= 1 && b.Status().Fallbacks >= 1 }, 3*time.Second, 5*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, 115200, w.rate(0))
	assert.Equal(t, 115200, w.rate(1))
}

// TestSilenceReturnsToStart: an end left at a rate the other is not at
// (a lost message, a far end restarted) hears nothing and returns to the
// start rate, where the two meet and climb again.
func TestSilenceReturnsToStart(t *testing.T) {
	var logs testutil.LogBuffer
	w := newWorld(921600, 115200)
	a, b := pair(t, w, quick(ladder, slog.New(slog.NewTextHandler(&logs, nil))), quick(ladder, nil))
	waitRates(t, w, 921600, 5*time.Second)
	require.Eventually(t, func() bool { return a.Status().Fallbacks >= 1 && b.Status().Fallbacks >= 1 }, 5*time.Second, 5*time.Millisecond, "1000000 tried")
	// The far end "restarts": its port is at the start rate again.
	require.NoError(t, w.ports[1].SetSpeed(115200))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "heard nothing for") }, 3*time.Second, 5*time.Millisecond)
	waitRates(t, w, 921600, 5*time.Second)
	assert.Contains(t, logs.String(), "back to the start rate 115200")
	assert.GreaterOrEqual(t, a.Status().Fallbacks, 2)
}

// TestDegradeStepsDown: frame errors above the threshold at a rate make
// the leader step down, and the rate is held off.
func TestDegradeStepsDown(t *testing.T) {
	var logs testutil.LogBuffer
	w := newWorld(921600, 115200)
	w.badOver = 460800
	a, b := pair(t, w, quick(ladder, slog.New(slog.NewTextHandler(&logs, nil))), quick(ladder, nil))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "stepping down to 460800") }, 5*time.Second, 5*time.Millisecond)
	waitRates(t, w, 460800, 3*time.Second)
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, 460800, w.rate(0))
	assert.Contains(t, a.Status().How, "stepped down: frame errors")
	assert.Contains(t, b.Status().How, "stepped down: frame errors")
}

// TestPeerWithoutAuto: a far end that does not serve the negotiation
// leaves this end at the start rate, said once.
func TestPeerWithoutAuto(t *testing.T) {
	var logs testutil.LogBuffer
	w := newWorld(921600, 115200)
	w.serves[1] = false
	a, _ := pair(t, w, quick(ladder, slog.New(slog.NewTextHandler(&logs, nil))), quick(ladder, nil))
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "the far end does not do --baud auto: staying at 115200 baud")
	}, 3*time.Second, 5*time.Millisecond)
	assert.Equal(t, "115200 baud (auto: start rate: the far end does not do --baud auto)", a.Status().String())
	assert.Equal(t, 115200, w.rate(0))
	assert.Zero(t, w.ports[0].sets)
}

func TestWireRoundTripAndBadInput(t *testing.T) {
	for _, m := range []msg{
		{typ: msgHello, version: 1, rates: []int{115200, 921600}},
		{typ: msgSwitch, seq: 7, from: 115200, to: 230400, delayMS: 300},
		{typ: msgReady, seq: 7}, {typ: msgAbort, seq: 7}, {typ: msgOK, seq: 7},
		{typ: msgRefuse, seq: 7, reason: "no"},
		{typ: msgProbe, seq: 7, data: pattern}, {typ: msgEcho, seq: 7, data: pattern},
		{typ: msgCounts, framesIn: 1 << 40, framesBad: 3},
	} {
		got, err := readMsg(bytes.NewReader(m.encode()))
		require.NoError(t, err)
		assert.Equal(t, m, got)
	}
	assert.Equal(t, []byte{0x03, 0, 4, 0, 0, 0, 7}, msg{typ: msgReady, seq: 7}.encode())
	for _, b := range [][]byte{
		{0x02, 0, 3, 1, 2, 3},             // SWITCH too short
		{0x01, 0, 3, 1, 0, 9},             // HELLO: 9 rates, none there
		{0x01, 0, 7, 1, 0, 1, 0, 0, 0, 0}, // HELLO offering rate 0
		{0x06, 0xff, 0xff},                // body too long
	} {
		_, err := readMsg(bytes.NewReader(b))
		assert.Error(t, err, "%x", b)
	}
	m, err := readMsg(bytes.NewReader([]byte{0x7f, 0, 1, 9}))
	require.NoError(t, err, "an unknown type is skipped")
	assert.Equal(t, byte(0x7f), m.typ)
	assert.Equal(t, 320, len(pattern))
}

// TestDegradeNotForRateFreeNoise: errors at the same rate at every rate
// (noise that does not depend on the rate) step the line down once; the
// rate below proves no better, the ends go back up and stay there, and
// never go below the start rate.
func TestDegradeNotForRateFreeNoise(t *testing.T) {
	var logs testutil.LogBuffer
	w := newWorld(921600, 115200)
	w.badOver = 9600
	cfg := quick(ladder, slog.New(slog.NewTextHandler(&logs, nil)))
	pair(t, w, cfg, quick(ladder, nil))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "stepping down to 460800") }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "the rate is not the trouble; back up") }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		return regexp.MustCompile(`damaged at 921600 baud, but \d+ % at 460800: staying`).MatchString(logs.String())
	}, 5*time.Second, 5*time.Millisecond, "logs")
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, 921600, w.rate(0))
	assert.Equal(t, 921600, w.rate(1))
	assert.NotContains(t, logs.String(), "stepping down to 230400")
}

// dropFirst loses the first message of type typ.
func dropFirst(typ byte) func([]byte) bool {
	var once sync.Once
	return func(m []byte) bool {
		lost := false
		if len(m) > 0 && m[0] == typ {
			once.Do(func() { lost = true })
		}
		return lost
	}
}

// TestLostReady: the follower's READY is lost: it switches alone, hears
// nothing verified and goes back by its deadline; the leader, with no
// answer, sends ABORT and stays; the next try gets through.
func TestLostReady(t *testing.T) {
	var la, lb testutil.LogBuffer
	w := newWorld(921600, 115200)
	w.drop = dropFirst(msgReady)
	pair(t, w, quick(ladder, slog.New(slog.NewTextHandler(&la, nil))), quick(ladder, slog.New(slog.NewTextHandler(&lb, nil))))
	waitRates(t, w, 921600, 10*time.Second)
	assert.Contains(t, la.String(), "autobaud: no answer to the switch to 230400 baud within 500ms: staying at 115200")
	assert.Contains(t, lb.String(), "autobaud: no verified traffic at 230400 baud within 300ms: back to 115200 baud")
}

// TestLostOK: the follower's OK is lost: the follower keeps the new rate,
// the leader goes back by its deadline; neither hears the other, both
// return to the start rate after the silence, and climb again.
func TestLostOK(t *testing.T) {
	var la, lb testutil.LogBuffer
	w := newWorld(921600, 115200)
	w.drop = dropFirst(msgOK)
	a, _ := pair(t, w, quick(ladder, slog.New(slog.NewTextHandler(&la, nil))), quick(ladder, slog.New(slog.NewTextHandler(&lb, nil))))
	require.Eventually(t, func() bool { return strings.Contains(lb.String(), "heard nothing for") }, 5*time.Second, 5*time.Millisecond)
	waitRates(t, w, 921600, 10*time.Second)
	assert.Contains(t, la.String(), "autobaud: no OK from the far end at 230400 baud within 600ms (the pattern crossed both ways): back to 115200 baud (trying again in 2s)")
	assert.Contains(t, lb.String(), "autobaud: heard nothing for")
	assert.GreaterOrEqual(t, a.Status().Fallbacks, 1)
}

// TestStuckSwitchFallsBack: a switch to a rate the line does not carry,
// where the follower's messages wait for the link (its window full) and
// its switch never ends. The silence watch takes over once the switch
// has taken longer than any switch can (stepBound): both ends meet at
// the start rate again and climb back to the fastest rate that works.
func TestStuckSwitchFallsBack(t *testing.T) {
	var logs testutil.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	w := newWorld(230400, 115200)
	w.blockWrites = true
	cfg := quick(ladder, log)
	_, b := pair(t, w, cfg, cfg)
	waitRates(t, w, 230400, 5*time.Second)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "is stuck for") }, 10*time.Second, 5*time.Millisecond,
		"the follower's switch to 460800 never ends by itself: %s", logs.String())
	// Back at the start rate, then up again to the cap.
	require.Eventually(t, func() bool { return w.rate(0) == 230400 && w.rate(1) == 230400 && b.Status().Fallbacks >= 1 }, 10*time.Second, 5*time.Millisecond,
		"rates %d and %d", w.rate(0), w.rate(1))
	assert.Contains(t, logs.String(), "back to the start rate 115200")
}
