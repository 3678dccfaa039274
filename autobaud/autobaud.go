package autobaud

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Rates are the standard rates --baud auto steps through, slowest first.
var Rates = []int{9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1000000, 1500000, 2000000, 3000000, 4000000}

// DefaultStart is the rate both ends start at unless told otherwise.
const DefaultStart = 115200

// Port is the serial port whose speed the controller sets:
// *serialport.Driver.
type Port interface {
	// Speed is the speed the port runs at, in bits per second.
	Speed() int
	// SetSpeed switches the port to baud bits per second at once; on
	// failure the port keeps its speed.
	SetSpeed(baud int) error
}

// Counters are the link's frame counters the controller watches.
type Counters struct {
	FramesIn, FramesBad, FramesOut, FramesResent uint64
}

// Line is the link over the port (FromLink adapts a *link.Link).
type Line interface {
	// SetLineRate tells the link the line's new rate in bytes per second.
	SetLineRate(bytesPerSecond int) error
	// Counters reads the frame counters.
	Counters() Counters
	// Up reports whether a session is up on an open transport.
	Up() bool
	// UpSince is when the link came up on its current transport (zero
	// while it is not up): the error rate counts from Settle after it.
	UpSince() time.Time
	// Leader reports whether this end leads the negotiation (the end of
	// the larger session id), and false for ok while there is no peer.
	Leader() (lead, ok bool)
	// PeerServes reports whether the peer named service in its hello.
	PeerServes(service string) bool
	// RTT is the round-trip time estimate (0 before one).
	RTT() time.Duration
}

// Config configures a Controller. Zero durations take the defaults given.
type Config struct {
	// Start is the rate both ends start at and return to after silence
	// (DefaultStart if 0); the port must be at it when Run starts.
	Start int
	// Rates are the rates this end offers, the port having accepted them
	// (serialport.Driver.AcceptedSpeeds); Start is added if missing.
	Rates []int
	// BitsPerByte is the line bits per byte (10 for 8N1), to tell the
	// link its rate in bytes per second.
	BitsPerByte float64
	// SwitchDelay is the least time between the follower's READY and the
	// switch, for READY to reach the leader (default 300 ms; more on a
	// line with a long round trip).
	SwitchDelay time.Duration
	// VerifyTimeout is how long an end waits after its switch for the
	// test pattern both ways before it goes back (default 2 s).
	VerifyTimeout time.Duration
	// ReadyTimeout bounds the leader's wait for READY or REFUSE
	// (default 5 s).
	ReadyTimeout time.Duration
	// Silence is how long an end may hear no good frame, away from the
	// start rate, before it returns to the start rate (default 3 s; give
	// more than the link's keepalive).
	Silence time.Duration
	// Retry is how long a rate that failed is not tried again, doubling
	// at each failure up to MaxRetry (defaults 30 s and 10 min).
	Retry, MaxRetry time.Duration
	// DegradeWindow and DegradeRatio: over each window (default 5 s) at
	// least DegradeMin (default 10) frames damaged on the way in at
	// either end, more than DegradeRatio (default 0.2) of the frames
	// that arrived, steps down a rate, never below Start. (On a line whose noise does not depend on the rate the
	// link's frame sizing keeps the loss near a few percent: at a bit
	// error rate of 1e-4, under 20 %; stepping down would not help it.)
	// The error rate counts from Settle after a switch (default 3 s), once
	// the link repaired what the switch garbled.
	DegradeWindow time.Duration
	DegradeRatio  float64
	DegradeMin    int
	Settle        time.Duration
	// Logger receives a line at each step; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Start <= 0 {
		c.Start = DefaultStart
	}
	if c.BitsPerByte <= 0 {
		c.BitsPerByte = 10
	}
	def(&c.SwitchDelay, 300*time.Millisecond)
	def(&c.VerifyTimeout, 2*time.Second)
	def(&c.ReadyTimeout, 5*time.Second)
	def(&c.Silence, 3*time.Second)
	def(&c.Retry, 30*time.Second)
	def(&c.MaxRetry, 10*time.Minute)
	def(&c.DegradeWindow, 5*time.Second)
	def(&c.Settle, 3*time.Second)
	if c.DegradeRatio <= 0 {
		c.DegradeRatio = 0.2
	}
	if c.DegradeMin <= 0 {
		c.DegradeMin = 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	rates := slices.Clone(c.Rates)
	if !slices.Contains(rates, c.Start) {
		rates = append(rates, c.Start)
	}
	slices.Sort(rates)
	c.Rates = slices.Compact(rates)
	return c
}

// Status is where the controller stands, for sockmux status.
type Status struct {
	// Rate is the rate the port runs at now.
	Rate int `json:"rate"`
	// How says how it was reached, e.g. "verified both ways, step 3" or
	// "start rate: the far end does not do --baud auto".
	How string `json:"how"`
	// Since is when the port was set to Rate.
	Since time.Time `json:"since"`
	// Steps counts the switches verified so far; Fallbacks those that
	// were not, and returns to the start rate after silence.
	Steps     int `json:"steps"`
	Fallbacks int `json:"fallbacks"`
}

// String is the status in a few words, e.g. "921600 baud (auto: verified
// both ways, 3 steps)".
func (s Status) String() string {
	return fmt.Sprintf("%d baud (auto: %s)", s.Rate, s.How)
}

// Controller runs --baud auto at one end.
type Controller struct {
	cfg    Config
	port   Port
	line   Line
	open   func(ctx context.Context) (io.ReadWriteCloser, error)
	log    *slog.Logger
	attach chan io.ReadWriteCloser

	mu       sync.Mutex
	st       Status
	reached  string    // how st.Rate was reached, before any failed try since
	stepping bool      // a switch is under way: the silence watch waits (at most stepBound)
	stepAt   time.Time // when the switch began
	// takenOver: the silence watch ended a stuck switch (switchBack)
	takenOver bool
	cur       io.Closer             // the negotiation stream in use, nil between sessions
	hold      map[int]time.Time     // rates not to try before then
	backoff   map[int]time.Duration // each rate's next hold
	noPeer    bool                  // logged that the peer does not serve Service
}

// New returns a controller of port under line. open opens a stream to
// the peer's Service (the leader's way in); streams the peer opens are
// handed over with Attach. Nothing runs until Run.
func New(cfg Config, port Port, line Line, open func(ctx context.Context) (io.ReadWriteCloser, error)) *Controller {
	cfg = cfg.withDefaults()
	return &Controller{
		cfg: cfg, port: port, line: line, open: open, log: cfg.Logger,
		attach:  make(chan io.ReadWriteCloser, 1),
		st:      Status{Rate: cfg.Start, How: "start rate", Since: time.Now()},
		reached: "start rate",
		hold:    map[int]time.Time{},
		backoff: map[int]time.Duration{},
	}
}

// Status returns where the controller stands.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// Attach hands the controller a stream the peer opened to Service (the
// follower's way in); a stream already attached and not yet taken is
// closed.
func (c *Controller) Attach(s io.ReadWriteCloser) {
	for {
		select {
		case c.attach <- s:
			return
		default:
		}
		select {
		case old := <-c.attach:
			_ = old.Close()
		default:
		}
	}
}

// Run negotiates until ctx ends: whenever the link is up and the peer
// serves Service, over one stream at a time.
func (c *Controller) Run(ctx context.Context) {
	go c.watchSilence(ctx)
	for ctx.Err() == nil {
		if !c.line.Up() {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		lead, ok := c.line.Leader()
		if !ok {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		if !c.line.PeerServes(Service) {
			c.mu.Lock()
			first := !c.noPeer
			c.noPeer = true
			if c.st.Rate == c.cfg.Start {
				c.st.How = "start rate: the far end does not do --baud auto"
				c.reached = c.st.How
			}
			c.mu.Unlock()
			if first {
				c.log.Info(fmt.Sprintf("autobaud: the far end does not do --baud auto: staying at %d baud", c.Status().Rate))
			}
			sleep(ctx, 2*time.Second)
			continue
		}
		c.mu.Lock()
		c.noPeer = false
		c.mu.Unlock()
		var s io.ReadWriteCloser
		if lead {
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var err error
			s, err = c.open(octx)
			cancel()
			if err != nil {
				c.log.Debug("autobaud: cannot open the negotiation stream", "err", err)
				sleep(ctx, 2*time.Second)
				continue
			}
		} else {
			select {
			case s = <-c.attach:
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
				continue // look at the link again
			}
		}
		err := c.session(ctx, s, lead)
		_ = s.Close()
		if err != nil && ctx.Err() == nil {
			c.log.Debug("autobaud: negotiation stream ended", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// session runs the negotiation over s until it breaks or ctx ends.
func (c *Controller) session(ctx context.Context, s io.ReadWriteCloser, lead bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	n := &nego{c: c, s: s, in: make(chan msg, 16), failed: make(chan struct{}), done: make(chan struct{}),
		errAt: map[int]float64{}, toldSame: map[int]bool{}}
	defer close(n.done)
	c.mu.Lock()
	c.cur = s
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cur = nil
		c.mu.Unlock()
	}()
	go n.read()
	if err := n.send(msg{typ: msgHello, version: version, rates: c.cfg.Rates}); err != nil {
		return err
	}
	m, err := n.await(ctx, time.Now().Add(10*time.Second), func(m msg) bool { return m.typ == msgHello })
	if err != nil {
		return fmt.Errorf("no HELLO from the far end: %w", err)
	}
	var common []int
	for _, r := range c.cfg.Rates {
		if slices.Contains(m.rates, r) {
			common = append(common, r)
		}
	}
	n.common = common
	if lead {
		c.log.Info(fmt.Sprintf("autobaud: rates both ends offer: %s", rateList(common)))
		return n.lead(ctx)
	}
	return n.follow(ctx)
}

// nego is one negotiation stream's state.
type nego struct {
	c      *Controller
	s      io.ReadWriteCloser
	in     chan msg
	failed chan struct{} // closed when reading fails
	done   chan struct{} // closed when the session ends
	err    error
	common []int
	seq    uint32 // the leader's last SWITCH; the follower's current one
	// The leader's: each rate's share of frames resent or damaged over
	// its last window there, and the rates it said it stays at anyway.
	errAt    map[int]float64
	toldSame map[int]bool
	downFrom int // the rate the last step down left, until a step up
	// peer is the far end's frame counters as its last COUNTS told
	// (the leader's; peerOK once one came).
	peer   Counters
	peerOK bool
	peerAt time.Time // when the last COUNTS came
	probe  uint32    // a PROBE of this seq is echoed
}

func (n *nego) read() {
	defer close(n.failed)
	for {
		m, err := readMsg(n.s)
		if err != nil {
			n.err = err
			return
		}
		select {
		case n.in <- m:
		case <-n.done:
			return
		}
	}
}

func (n *nego) send(m msg) error {
	_, err := n.s.Write(m.encode())
	return err
}

var errTimeout = errors.New("timed out")

// await handles messages until want takes one (returned) or deadline
// passes (errTimeout). Meanwhile a PROBE of the current switch is
// answered with its ECHO.
func (n *nego) await(ctx context.Context, deadline time.Time, want func(msg) bool) (msg, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return msg{}, ctx.Err()
		case <-n.failed:
			if n.err == nil {
				return msg{}, io.EOF
			}
			return msg{}, n.err
		case <-t.C:
			return msg{}, errTimeout
		case m := <-n.in:
			if m.typ == msgCounts {
				n.peer, n.peerOK, n.peerAt = Counters{FramesIn: m.framesIn, FramesBad: m.framesBad}, true, time.Now()
			}
			if m.typ == msgProbe && m.seq == n.probe && n.probe != 0 && bytes.Equal(m.data, pattern) {
				if err := n.send(msg{typ: msgEcho, seq: m.seq, data: pattern}); err != nil {
					return msg{}, err
				}
			}
			if want(m) {
				return m, nil
			}
		}
	}
}

// rateList formats rates for a log line.
func rateList(rates []int) string {
	if len(rates) == 0 {
		return "none"
	}
	var b []byte
	for i, r := range rates {
		if i > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%d", r)
	}
	return string(b)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
