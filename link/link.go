package link

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
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
	rate  atomic.Int64 // the line rate now: props.LineRate until SetLineRate (rate.go)
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

	peerServices []string // the services the peer named in its hello (services.go)
	peerName     string   // the name the peer gave in its hello (name.go)

	lastInteractive time.Time // when an interactive payload last went out

	sender // the send side of the ARQ (arq.go)

	// compression (compress.go)
	zLevel int           // the deflate level we send with (0: none)
	zPlain int           // plain bytes we take in one payload with compression (compressPlainMax)
	zOn    bool          // this session's payloads carry codec bytes
	ztx    *compressor   // the session's sending context (nil unless zOn)
	zrx    *decompressor // the session's receiving context (nil unless zOn)

	sessionSecret []byte // from the handshake that created the session

	receiver // the receive side of the ARQ (arq.go)

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

// New prepares a link over drv for the layer up. Call Run to start it.
// It does not verify cfg (Config.Verify does; endpoint.New calls it): zero
// fields take their defaults, and an out-of-range MaxPayload or Window is
// clamped into range (DefaultConfig).
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
		closeSent: make(chan struct{}),
		done:      make(chan struct{}),
	}
	l.rate.Store(int64(props.LineRate))
	l.sender = newSender(cfg, props, l.freeFrame)
	l.receiver = newReceiver(cfg)
	l.setupCompression(compressPlainMax)
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
func (l *Link) Config() Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// Properties returns the driver's transport properties, with the line
// rate as SetLineRate last set it.
func (l *Link) Properties() Properties {
	p := l.props
	p.LineRate = l.lineRate()
	return p
}

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

// interactiveAbout reports whether an interactive payload went out within
// the last interactiveSpell, under l.mu.
func (l *Link) interactiveAbout() bool { return time.Since(l.lastInteractive) < interactiveSpell }

// payloadLimit is the largest payload both ends accept.
func (l *Link) payloadLimit() int { return min(l.cfg.MaxPayload, l.peerMax) }

// resetSession forgets the sequence state of the current session, under
// l.mu, and tells the upper layer the session is over.
func (l *Link) resetSession(reason error) {
	had := l.established
	l.gen++
	l.established = false
	l.sender.reset()
	l.receiver.reset()
	l.ztx, l.zrx = nil, nil
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
