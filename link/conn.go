package link

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one open transport carrying the link's session: a reader
// goroutine handles what arrives, and a writer goroutine decides, each time
// the line can take a frame, which frame goes next.
type conn struct {
	l       *Link
	t       io.ReadWriteCloser
	trace   bool // log every frame (debug level)
	broken  chan struct{}
	once    sync.Once
	err     error
	pace    pacer
	fr      *frameReader // the reader goroutine's, touched only by it
	writing *outFrame    // a frame the writer writes from its own buffer now (l.mu)
	bus     *bus         // the turns on a half-duplex line (halfduplex.go), else nil
	fec     *fecLink     // the FEC stage (fec.go), nil when this end offers none here
	rawOut  bool         // the peer reads length-prefixed frames (guarded by l.mu)
	toldRaw bool         // our hello said we read them: the peer knows what follows

	// Guarded by l.mu.
	handshake               // this transport's hello round and authentication (handshake.go)
	qmin      time.Duration // least ack excess delay seen in this window
	qwin      time.Time     // when the window began
	drainDue  time.Duration // pause the writer this long to drain a standing queue

	lastStep    step      // the step of the frame next() returned last
	preempter   Preempter // the upper layer, if it can send interactive data ahead
	preemptible *outFrame // the data frame next() just built, if it may be cut short
	urgentDue   bool      // a frame was cut short for interactive data
	closeDue    string    // reason for a CLOSE frame to send, if any
	closeDone   bool      // our goodbye (Link.Close) was written
	ackDue      bool      // an ack is owed to the peer
	ackAt       time.Time // when it goes out at the latest
	piecesDue   []uint16  // frames arriving in fragments whose PIECES are owed
	pongDue     bool      // a ping waits for its answer
	pongToken   uint32    // the ping's token
	pingToken   uint32    // our last ping's token
	pingSent    time.Time // when it went out (zero once answered)
	lastRecv    time.Time
	lastDamaged time.Time // when a damaged frame arrived last
	lastSend    time.Time
	bytesIn     atomic.Uint64 // bytes read on this transport
	framesGood  atomic.Int64  // frames read whole on this transport
	framesBad   atomic.Int64  // frames read damaged on this transport

	// The receiving compression context of the session the payloads
	// handle returned last belong to (the reader goroutine's).
	rxz *decompressor
}

// serve runs the session over transport t until t breaks or ctx ends.
func (l *Link) serve(ctx context.Context, t io.ReadWriteCloser) error {
	now := time.Now()
	c := &conn{
		l:        l,
		t:        t,
		trace:    l.log.Enabled(ctx, slog.LevelDebug),
		broken:   make(chan struct{}),
		lastRecv: now,
		lastSend: now,
		pace:     newPacer(l.lineRate(), t),
	}
	c.preempter, _ = l.up.(Preempter)
	if n := l.fecBlock(); n > 0 {
		var err error
		if c.fec, err = newFECLink(c, n); err != nil {
			return err
		}
	}
	if l.cfg.HalfDuplex && l.lineRate() > 0 {
		c.bus = newBus(l.lineRate())
		c.t = &busTransport{ReadWriteCloser: t, b: c.bus}
	}
	l.mu.Lock()
	l.cur = c
	l.state = StateHandshake
	c.newRound(now)
	l.mu.Unlock()

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c.fail(c.readLoop())
	}()
	go c.watchdog()
	c.fail(c.writeLoop(ctx))
	closeQuietly(t)
	<-readDone

	l.mu.Lock()
	l.cur = nil
	refused := c.refusing
	l.lastUp = c.wasUp
	l.mu.Unlock()
	if refused != nil {
		return refused // why we hung up, not how the transport ended
	}
	return c.err
}

// watchdog breaks the transport once the peer has been silent for the dead
// timeout, like the writer's own check, which cannot run while a Write
// blocks: a peer that stopped reading (a stopped process on a full pipe, a
// TCP peer gone without a reset) would otherwise hold the link for good.
func (c *conn) watchdog() {
	l := c.l
	t := time.NewTimer(l.cfg.DeadTimeout)
	defer t.Stop()
	for {
		select {
		case <-c.broken:
			return
		case <-t.C:
		}
		l.mu.Lock()
		now := time.Now()
		silent, dead := now.Sub(c.lastRecv), c.deadAt()
		applies := c.deadApplies()
		l.mu.Unlock()
		if !applies {
			t.Reset(l.cfg.DeadTimeout) // look again later
			continue
		}
		if now.After(dead) {
			c.fail(errPeerSilent{silent})
			return
		}
		t.Reset(dead.Sub(now) + time.Millisecond)
	}
}

// deadApplies reports whether the dead timeout applies now, under l.mu:
// always on a reliable transport; on a line only once the session is up
// on it, since a line with nobody at the other end is not broken, and
// reopening a serial device would only toggle its modem lines.
func (c *conn) deadApplies() bool { return c.complete || c.l.props.Reliable }

// deadAt is when the peer counts as gone, under l.mu: DeadTimeout after
// the last frame heard whole. On a line a damaged frame is a sign of life
// too, since a noisy line loses whole runs of the peer's frames (at BER
// 3e-3 five hellos in a row one time in six): one heard within
// DeadTimeout holds it off, up to three DeadTimeouts after the last whole
// frame, so that noise alone does not hold a link whose peer is gone.
func (c *conn) deadAt() time.Time {
	d := c.l.cfg.DeadTimeout
	at := c.lastRecv.Add(d)
	if !c.l.props.Reliable && c.lastDamaged.After(c.lastRecv) {
		alive := c.lastDamaged.Add(d)
		if most := c.lastRecv.Add(3 * d); alive.After(most) {
			alive = most
		}
		if alive.After(at) {
			at = alive
		}
	}
	return at
}

// fail breaks the transport with err; the first error wins.
func (c *conn) fail(err error) {
	c.once.Do(func() {
		if err == nil {
			err = io.EOF
		}
		c.err = err
		close(c.broken)
		closeQuietly(c.t)
	})
}

func (c *conn) brokenErr(err error) error {
	select {
	case <-c.broken:
		return c.err
	default:
		return err
	}
}
