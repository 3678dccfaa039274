package link

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"
)

// State is where a link stands.
type State int

// The states of a link.
const (
	StateWaiting        State = iota // waiting for the transport (device, peer) to open
	StateHandshake                   // transport open, a first handshake under way
	StateUp                          // session established, data flowing
	StateClosed                      // closed for good
	StateResuming                    // transport open, handshaking to resume the session
	StateAuthenticating              // hellos done, proving the shared key
)

// States lists every state a link can be in, in the order it meets them.
var States = []State{StateWaiting, StateHandshake, StateAuthenticating, StateResuming, StateUp, StateClosed}

func (s State) String() string {
	switch s {
	case StateWaiting:
		return "waiting"
	case StateHandshake:
		return "handshake"
	case StateUp:
		return "up"
	case StateResuming:
		return "resuming"
	case StateAuthenticating:
		return "authenticating"
	}
	return "closed"
}

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("link closed")

// Link runs the reliable framing protocol over transports opened by a
// Driver, and carries one session across as many transports as it takes.
type Link struct {
	drv   Driver
	props Properties
	cfg   Config
	up    Upper
	log   *slog.Logger
	stats Stats

	wake chan struct{} // wakes the writer of the current transport

	mu          sync.Mutex
	state       State
	localID     uint64 // our session id; new only when a session is abandoned
	peerID      uint64 // the peer of the current session, 0 if none
	gen         uint64 // bumped whenever a session ends
	established bool   // a session exists (payloads may flow)
	peerMax     int    // peer's largest accepted payload
	peerWindow  int    // peer's out-of-order buffer, in frames

	// send side
	nextSeq uint16
	unacked []*outFrame // oldest first
	txCount uint64      // transmissions so far, orders frames on the line
	srtt    time.Duration
	rttvar  time.Duration
	rto     time.Duration
	held    *outFrame // a frame cut short, to send again under a new number
	sizeCap int       // payload size for the line's error rate now
	fates   int       // data frames judged in this window
	losses  int       // of which lost at the first try

	// compression (compress.go)
	zLevel int           // the deflate level we send with (0: none)
	zOn    bool          // this session's payloads carry codec bytes
	ztx    *compressor   // the session's sending context (nil unless zOn)
	zrx    *decompressor // the session's receiving context (nil unless zOn)

	// receive side
	sessionSecret []byte // from the handshake that created the session

	rxNext      uint16
	ooo         map[uint16][]byte
	partials    map[uint16]*partial // frames arriving in fragments
	lastAckSent uint16              // rxNext as of the last ack we sent

	upSince   time.Time   // when a handshake last completed (linkBack)
	cur       *conn       // the transport in use, nil while waiting
	lastUp    bool        // a session was up on the last transport
	goneTimer *time.Timer // the resume timeout, running while a session has no transport (gone.go)
	closing   bool        // Close called: say goodbye and stop
	closeWhy  string      // reason sent in our CLOSE frame
	closeSent chan struct{}
	done      chan struct{}
	cancel    context.CancelFunc
}

// outFrame is a data frame sent and not yet acknowledged.
type outFrame struct {
	head    []byte // room for a length-prefixed frame's header, just before raw
	raw     []byte // type, seq, ack, payload; room for the CRC after it
	seq     uint16
	sentAt  time.Time
	wireLen int    // encoded length at the last transmission
	plain   int    // payload bytes before compression
	tx      uint64 // txCount at the last transmission
	resent  bool   // transmitted more than once (no RTT sample: Karn)
	sacked  bool   // the peer holds it out of order
	pending bool   // due for (re)transmission
	fragOff int    // resending in fragments: the next piece's offset
	// acknowledged while the writer wrote it: recycled after the write
	freeLater bool
}

// New prepares a link over drv for the layer up. Call Run to start it.
func New(drv Driver, up Upper, cfg Config) *Link {
	props := drv.Properties()
	cfg = DefaultConfig(cfg, props)
	l := &Link{
		drv:       drv,
		props:     props,
		cfg:       cfg,
		up:        up,
		log:       cfg.Logger,
		wake:      make(chan struct{}, 1),
		localID:   newSessionID(),
		ooo:       make(map[uint16][]byte),
		partials:  make(map[uint16]*partial),
		closeSent: make(chan struct{}),
		done:      make(chan struct{}),
	}
	l.rto = l.initialRTO()
	l.sizeCap = cfg.MaxPayload
	l.zLevel = compressLevel(cfg.Compress, props)
	return l
}

func newSessionID() uint64 {
	var b [8]byte
	for {
		_, _ = crand.Read(b[:])
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// Config returns the link's effective configuration.
func (l *Link) Config() Config { return l.cfg }

// Properties returns the driver's transport properties.
func (l *Link) Properties() Properties { return l.props }

// State reports the link's state.
func (l *Link) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != StateHandshake {
		return l.state
	}
	if c := l.cur; c != nil && c.auth != nil && !c.auth.done {
		return StateAuthenticating
	}
	if l.peerID != 0 {
		return StateResuming
	}
	return StateHandshake
}

// UpSince returns when the link came up on its current transport (a
// handshake completed); zero while it is not up.
func (l *Link) UpSince() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != StateUp {
		return time.Time{}
	}
	return l.upSince
}

// Session returns the current session ids (zero peer when none).
func (l *Link) Session() (local, peer uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.localID, l.peerID
}

// RTT returns the smoothed round-trip time estimate (0 before a sample).
func (l *Link) RTT() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.srtt
}

// Stats returns the link's counters.
func (l *Link) Stats() *Stats { return &l.stats }

// Notify tells the link that the upper layer has something to send. It
// never blocks and takes no lock, so it may be called from anywhere.
func (l *Link) Notify() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run opens transports and carries the session over them until ctx ends
// or Close is called.
func (l *Link) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	l.mu.Lock()
	l.cancel = cancel
	l.mu.Unlock()
	defer func() {
		cancel()
		l.mu.Lock()
		l.linkBack()
		l.state = StateClosed
		l.mu.Unlock()
		close(l.done)
	}()
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		if ctx.Err() != nil {
			return ErrClosed
		}
		l.setState(StateWaiting)
		t, err := l.drv.Open(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ErrClosed
			}
			l.mu.Lock()
			if refusedDial(err) {
				l.giveUp(&GoneError{Reason: "connection refused"})
			} else {
				l.linkLost()
			}
			l.mu.Unlock()
			d := backoff.next()
			l.log.Warn("transport open failed", "transport", l.drv.String(), "err", err, "retry_in", d)
			if !sleepCtx(ctx, d) {
				return ErrClosed
			}
			continue
		}
		l.stats.TransportOpens.Add(1)
		l.log.Debug("transport open", "transport", l.drv.String())
		start := time.Now()
		err = l.serve(ctx, t)
		if ctx.Err() != nil {
			return ErrClosed
		}
		var fatal *HandshakeError
		var auth *AuthError
		switch {
		case errors.As(err, &fatal):
			if errors.As(err, &auth) {
				l.stats.AuthFailures.Add(1)
				if p, ok := l.drv.(Penalizer); ok {
					p.Penalize(t)
				}
			}
			l.mu.Lock()
			l.linkLost()
			l.mu.Unlock()
			d := backoff.next()
			l.log.Error("link handshake failed", "transport", l.drv.String(), "err", err, "retry_in", d)
			if !sleepCtx(ctx, d) {
				return ErrClosed
			}
		default:
			l.log.Warn("transport lost", "transport", l.drv.String(), "err", err)
			l.mu.Lock()
			wasUp := l.lastUp
			l.linkLost()
			l.mu.Unlock()
			if wasUp || time.Since(start) > 10*time.Second {
				backoff.reset() // it worked: the next reopen is prompt
			}
			// A transport that breaks at once must not spin.
			if !sleepCtx(ctx, backoff.next()/4) {
				return ErrClosed
			}
		}
	}
}

// Close says goodbye to the peer (a CLOSE frame, so it resets its streams
// at once instead of waiting for us to come back), waits up to timeout for
// that to be written, and stops the link.
func (l *Link) Close(reason string, timeout time.Duration) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return
	}
	l.closing = true
	l.closeWhy = reason
	up := l.cur != nil && l.cur.complete
	cancel := l.cancel
	l.mu.Unlock()
	if up {
		l.Notify()
		select {
		case <-l.closeSent:
		case <-time.After(timeout):
		}
	}
	if cancel != nil {
		cancel()
		<-l.done
	}
}

// HandshakeError is a handshake that failed for a reason a retry on the
// same transport will not fix: a peer that is not sockmux, or speaks
// another version.
type HandshakeError struct{ Err error }

func (e *HandshakeError) Error() string { return e.Err.Error() }
func (e *HandshakeError) Unwrap() error { return e.Err }

func (l *Link) setState(s State) {
	l.mu.Lock()
	if l.state != StateClosed {
		l.state = s
	}
	l.mu.Unlock()
}

func (l *Link) initialRTO() time.Duration {
	return max(time.Second, 3*lineTime(l.cfg.MaxPayload+frameOverhead, l.props.LineRate))
}

// maxBackoff bounds the retransmission timer as it backs off. A paced
// line cannot be congested (we never send faster than it carries), so
// backing off only idles it: there the timer stays near the time the
// unacknowledged frames take on the line, which on a noisy line keeps
// rounds of fragments coming. Elsewhere it backs off to 10 s.
func (l *Link) maxBackoff() time.Duration {
	if l.props.LineRate == 0 {
		return 10 * time.Second
	}
	n := 0
	for _, f := range l.unacked {
		n += f.wireLen
	}
	return min(10*time.Second, max(2*l.computeRTO(), 2*lineTime(n, l.props.LineRate)+l.minRTO()))
}

func (l *Link) minRTO() time.Duration {
	return 2*lineTime(l.cfg.MaxPayload+frameOverhead+8, l.props.LineRate) + 30*time.Millisecond
}

// Bounds of the adaptive payload size on lossy lines.
const (
	minSizeCap = 32
	fateWindow = 16 // data frames per estimate of the line's error rate
	fateQuick  = 4  // consecutive losses that make an estimate at once
)

// frameFate records whether a data frame got through at the first try,
// under l.mu, and every fateWindow frames sizes frames to the line's error
// rate: from the share of frames lost it estimates the bit error rate, and
// takes the payload that carries the most data per byte on the line,
// which balances the header's cost against the chance of losing the frame
// (about sqrt(overhead / (8 * BER))).
func (l *Link) frameFate(lost bool) {
	if l.props.Reliable {
		return
	}
	l.fates++
	if lost {
		l.losses++
	}
	// A run of losses with no success is news enough: on a line that
	// turned bad, waiting for a full window costs several timeouts.
	if l.fates < fateWindow && (l.losses < fateQuick || l.losses < l.fates) {
		return
	}
	rate := float64(l.losses) / float64(l.fates)
	l.fates, l.losses = 0, 0
	size := l.cfg.MaxPayload
	if rate > 0 {
		bits := 8 * float64(l.sizeCap+frameOverhead+l.sizeCap/254+2)
		ber := -math.Log1p(-min(rate, 0.99)) / bits
		size = int(math.Sqrt(float64(frameOverhead+8) / (8 * ber)))
	}
	// Move halfway there: one unlucky window does not swing it.
	next := (l.sizeCap + size) / 2
	if rate >= 0.5 {
		next = size // most frames are lost: waiting halfway only loses more
	}
	next = max(minSizeCap, min(l.cfg.MaxPayload, next))
	if next != l.sizeCap {
		l.log.Debug("frame size for the line's error rate", "loss", rate, "payload", next)
		l.sizeCap = next
	}
}

// sendWindow is how many frames may be unacknowledged.
func (l *Link) sendWindow() int { return min(l.cfg.Window, l.peerWindow) }

// inflightFrames is how many full-size frames a paced line keeps in
// flight at most: enough to cover a round trip and a repair, few enough
// that a lost frame does not wait behind seconds of line time.
const inflightFrames = 16

// inflightRoom reports whether another data frame may go out, under l.mu:
// on a paced line the unacknowledged payload stays under inflightFrames
// full frames (the window in frames is sized for small frames).
func (l *Link) inflightRoom() bool {
	if l.props.LineRate == 0 {
		return true
	}
	n := 0
	for _, f := range l.unacked {
		n += len(f.raw) - dataHeader
	}
	return n < inflightFrames*l.cfg.MaxPayload
}

// payloadLimit is the largest payload both ends accept.
func (l *Link) payloadLimit() int { return min(l.cfg.MaxPayload, l.peerMax) }

// resetSession forgets the sequence state of the current session, under
// l.mu, and tells the upper layer the session is over.
func (l *Link) resetSession(reason error) {
	had := l.established
	l.gen++
	l.established = false
	l.nextSeq, l.rxNext = 0, 0
	l.unacked = nil
	l.held = nil
	l.ztx, l.zrx = nil, nil
	clear(l.ooo)
	clear(l.partials)
	l.rto = l.initialRTO()
	l.srtt, l.rttvar = 0, 0
	if had {
		l.stats.SessionsEnded.Add(1)
		l.up.SessionEnd(reason)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff doubles a delay from lo up to hi.
type backoff struct{ cur, lo, hi time.Duration }

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{lo: lo, hi: hi} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.lo
	} else {
		b.cur = min(2*b.cur, b.hi)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// errPeerSilent is a transport on which the peer said nothing for too long.
type errPeerSilent struct{ d time.Duration }

func (e errPeerSilent) Error() string {
	return fmt.Sprintf("peer silent for %v", e.d.Round(time.Millisecond))
}

// closeQuietly closes c, ignoring the error: the transport is being given up.
func closeQuietly(c io.Closer) { _ = c.Close() }
