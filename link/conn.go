package link

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
	rawOut  bool         // the peer reads length-prefixed frames (guarded by l.mu)
	toldRaw bool         // our hello said we read them: the peer knows what follows

	// Guarded by l.mu.
	roundDone bool // our hello round completed on this transport
	complete  bool // session up on this transport (authenticated if required)
	auth      *authState
	authOut   []byte        // an AUTH frame to send
	authLast  time.Time     // when our last AUTH message went out
	authMsg   []byte        // our last handshake message, repeated if lost
	authPeer  []byte        // the peer's last handshake message
	refusing  error         // authentication failed: drop the transport once the peer is told
	qmin      time.Duration // least ack excess delay seen in this window
	qwin      time.Time     // when the window began
	drainDue  time.Duration // pause the writer this long to drain a standing queue

	preempter   Preempter // the upper layer, if it can send interactive data ahead
	preemptible *outFrame // the data frame next() just built, if it may be cut short
	urgentDue   bool      // a frame was cut short for interactive data
	refusedAt   time.Time // when we told the peer
	waitLogged  bool      // we said we wait for the peer
	wasUp       bool      // a session was up on this transport
	peerHello   *hello    // the peer's latest hello on this transport
	helloPrev   uint64    // the PeerPrev our hellos carry in this round
	helloDue    bool      // a hello must be sent now
	lastHello   time.Time // when our last hello went out
	hsStart     time.Time // when this handshake round began
	closeDue    string    // reason for a CLOSE frame to send, if any
	closeDone   bool      // our goodbye (Link.Close) was written
	ackDue      bool
	ackAt       time.Time
	pongDue     bool
	pongToken   uint32
	pingToken   uint32
	pingSent    time.Time
	lastRecv    time.Time
	lastSend    time.Time
	bytesIn     atomic.Uint64 // bytes read on this transport

	// The receiving compression context of the session the payloads
	// handle returned last belong to (the reader goroutine's).
	rxz *decompressor
}

// helloInterval is how often an unanswered hello is repeated.
const helloInterval = time.Second

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
		pace:     newPacer(l.props.LineRate, t),
	}
	c.preempter, _ = l.up.(Preempter)
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
		silent := time.Since(c.lastRecv)
		applies := c.deadApplies()
		l.mu.Unlock()
		if !applies {
			t.Reset(l.cfg.DeadTimeout) // look again later
			continue
		}
		if silent > l.cfg.DeadTimeout {
			c.fail(errPeerSilent{silent})
			return
		}
		t.Reset(l.cfg.DeadTimeout - silent + time.Millisecond)
	}
}

// deadApplies reports whether the dead timeout applies now, under l.mu:
// always on a reliable transport; on a line only once the session is up
// on it, since a line with nobody at the other end is not broken, and
// reopening a serial device would only toggle its modem lines.
func (c *conn) deadApplies() bool { return c.complete || c.l.props.Reliable }

// newRound starts a handshake round on this transport, under l.mu.
func (c *conn) newRound(now time.Time) {
	c.complete = false
	c.roundDone = false
	c.auth = nil
	c.authOut, c.authMsg, c.authPeer = nil, nil, nil
	c.helloPrev = c.l.peerID
	c.helloDue = true
	c.hsStart = now
	c.peerHello = nil
	c.l.state = StateHandshake
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

func (c *conn) readLoop() error {
	l := c.l
	fr := newFrameReader(c.t, l.cfg.MaxPayload+frameOverhead+sealOverhead, func(err error) {
		l.stats.FramesBad.Add(1)
		if c.trace {
			l.log.Debug("frame dropped", "err", err)
		}
		l.mu.Lock()
		started := c.roundDone
		l.mu.Unlock()
		if l.props.Reliable && started {
			// A reliable transport does not damage frames, and will not
			// repeat this one: start over on a new transport, where
			// everything unacknowledged is sent again.
			c.fail(fmt.Errorf("damaged frame on a reliable transport (%v)", err))
		}
	}, func(n int) {
		l.stats.BytesIn.Add(uint64(n))
		c.bytesIn.Add(uint64(n))
	})
	c.fr = fr
	var deliver [][]byte
	for {
		body, err := fr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("transport closed by peer (EOF)")
			}
			return err
		}
		l.stats.FramesIn.Add(1)
		if c.trace {
			l.log.Debug("frame in", "type", frameName(body[0]), "len", len(body))
		}
		deliver, err = c.handle(body, deliver[:0])
		if err != nil {
			return err
		}
		for i, p := range deliver {
			l.stats.CompressedIn.Add(uint64(len(p)))
			if c.rxz != nil {
				if p, err = c.rxz.decode(p); err != nil {
					c.abandon(fmt.Errorf("peer protocol violation: %w", err))
					break
				}
			}
			if err := l.up.Deliver(p); err != nil {
				c.abandon(fmt.Errorf("peer protocol violation: %w", err))
				break
			}
			l.stats.PayloadIn.Add(uint64(len(p)))
			deliver[i] = nil
		}
	}
}

// handle processes one good frame and returns the payloads to deliver, in
// order. An error breaks the transport.
func (c *conn) handle(body []byte, deliver [][]byte) ([][]byte, error) {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	c.rxz = l.zrx
	now := time.Now()
	c.lastRecv = now
	if a := c.auth; a != nil && a.recv != nil && body[0] != frameHello {
		pt, err := a.open(body)
		if err != nil {
			l.stats.FramesBad.Add(1)
			if errors.Is(err, errTampered) {
				l.log.Error("dropped a frame", "err", err)
				if l.props.Reliable {
					return nil, err
				}
			}
			return deliver, nil
		}
		body = pt
		if !a.initiator && !a.done {
			c.authenticated() // only the initiator could have sealed it
		}
	} else if l.cfg.Secret != nil && body[0] != frameHello && body[0] != frameAuth {
		return deliver, nil // not sealed: ignored when authentication is on
	}
	switch body[0] {
	case frameAuth:
		if err, tell := c.onAuth(body[1:], c.auth != nil && c.auth.recv != nil); err != nil {
			if !tell {
				return nil, &HandshakeError{err}
			}
			c.refuse(err)
		}
	case frameHello:
		h, err := parseHello(body)
		if err != nil {
			var ve *VersionError
			if errors.Is(err, errNotSockmux) || errors.As(err, &ve) {
				return nil, &HandshakeError{err}
			}
			l.stats.FramesBad.Add(1)
			return deliver, nil
		}
		if h.Flags&helloRaw != 0 && l.props.Reliable && !c.rawOut {
			// Both ends read length-prefixed frames: from here on the
			// peer may send them (after this hello), and so do we (after
			// our first hello, which told the peer).
			c.fr.raw = true
			c.rawOut = true
		}
		if !l.closing {
			if err := c.onHello(h, now); err != nil {
				return nil, err
			}
		}
	case frameData:
		if len(body) < dataHeader {
			l.stats.FramesBad.Add(1)
			return deliver, nil
		}
		if !c.complete {
			return deliver, nil // data before the handshake: the sender repeats it
		}
		seq := binary.BigEndian.Uint16(body[1:])
		c.onAck(binary.BigEndian.Uint16(body[3:]), 0, now)
		deliver = c.onData(seq, body[dataHeader:], deliver, now)
	case frameFrag:
		if len(body) < fragHeader || !c.complete {
			return deliver, nil
		}
		seq := binary.BigEndian.Uint16(body[1:])
		c.onAck(binary.BigEndian.Uint16(body[3:]), 0, now)
		total := int(binary.BigEndian.Uint16(body[5:]))
		off := int(binary.BigEndian.Uint16(body[7:]))
		if p := l.addFragment(seq, total, off, body[fragHeader:]); p != nil {
			deliver = c.onData(seq, p, deliver, now)
		}
	case frameAck:
		next, sack, err := parseAck(body)
		if err != nil {
			l.stats.FramesBad.Add(1)
			return deliver, nil
		}
		if c.complete {
			c.onAck(next, sack, now)
		}
	case framePing:
		if len(body) == 5 {
			c.pongDue = true
			c.pongToken = binary.BigEndian.Uint32(body[1:])
			l.Notify()
		}
	case framePong:
		if len(body) == 5 && binary.BigEndian.Uint32(body[1:]) == c.pingToken && !c.pingSent.IsZero() {
			l.rttSample(now.Sub(c.pingSent))
			c.pingSent = time.Time{}
		}
	case frameClose:
		if !c.complete {
			return deliver, nil // only an authenticated peer may end the session
		}
		reason := string(body[1:])
		l.log.Warn("peer closed the session", "reason", reason)
		if l.peerID != 0 {
			l.resetSession(&PeerClosedError{Reason: reason})
			l.peerID = 0
			// A session id names one session: a peer that sees it again
			// with no previous session may adopt it (sessionAdopt).
			l.localID = newSessionID()
		}
		c.newRound(now)
		l.Notify()
	default:
		// A frame type from a newer version: ignored.
		l.stats.FramesBad.Add(1)
	}
	return deliver, nil
}

// PeerClosedError is the reason streams end when the peer closed the
// session (it shut down, or gave the session up).
type PeerClosedError struct{ Reason string }

func (e *PeerClosedError) Error() string { return "peer closed the session: " + e.Reason }

// PeerRestartedError is the reason streams end when the peer came back
// with a new session: it restarted and knows nothing of the old streams.
type PeerRestartedError struct{}

func (e *PeerRestartedError) Error() string { return "peer restarted (new session)" }

// onHello runs the handshake, under l.mu. Each end repeats its hello
// until it sees the peer's hello echo its session id; see docs/protocol.md.
func (c *conn) onHello(h *hello, now time.Time) error {
	l := c.l
	if h.Echo != l.localID {
		// The peer has not seen our hello in its current round: it
		// (re)started its handshake. Answer, and wait for its echo.
		if c.roundDone {
			l.log.Debug("peer restarted the handshake")
			c.newRound(now)
		}
		c.peerHello = h
		c.helloDue = true
		l.Notify()
		return nil
	}
	c.peerHello = h
	if !c.roundDone {
		c.roundDone = true
		if err := c.checkAuthFlags(h); err != nil {
			c.refuse(err)
			return nil
		}
		mode := sessionFresh
		if l.peerID != 0 && l.peerID == h.Session {
			switch h.PeerPrev {
			case l.localID:
				mode = sessionResume
			case 0:
				mode = sessionAdopt
			}
		}
		if l.cfg.Secret != nil {
			if err := c.startAuth(h, mode); err != nil {
				return err
			}
		} else {
			c.completeHandshake(h, mode)
		}
	}
	if h.Flags&helloDone == 0 {
		c.helloDue = true // the peer still waits for our echo
		l.Notify()
	}
	return nil
}

// sessionMode is what a completed hello round does with the session.
type sessionMode int

const (
	// sessionFresh starts a new session: the peer is new, or restarted.
	sessionFresh sessionMode = iota
	// sessionResume continues the session both ends have: the peer names
	// us as the session it last had.
	sessionResume
	// sessionAdopt continues our session with a peer that never completed
	// its side of it: its hello carries our peer's session id and no
	// previous session. Its session state is pristine (a session id ends
	// with its first completed session, see onClose), so it accepted none
	// of our data and sent none: everything we queued is sent again from
	// the first sequence number, and our streams go on.
	sessionAdopt
)

// Hello flags.
const (
	helloDone = 0x01 // the sender completed its hello round
	helloRaw  = 0x04 // the sender reads length-prefixed frames (reliable transports)
)

// checkAuthFlags refuses a peer whose idea of authentication differs.
func (c *conn) checkAuthFlags(h *hello) error {
	theirs, ours := h.Flags&helloAuth != 0, c.l.cfg.Secret != nil
	switch {
	case theirs && !ours:
		return &AuthError{fmt.Errorf("the peer requires a shared secret and this end has none: %w", errSecretMismatch)}
	case ours && !theirs:
		return &AuthError{fmt.Errorf("the peer has no shared secret and this end requires one: %w", errSecretMismatch)}
	}
	return nil
}

// errSecretMismatch is one end with a shared secret and the other without.
var errSecretMismatch = errors.New("one end has a shared secret and the other has none (give both ends the same --secret-file)")

// refuse tells the peer why its authentication failed, in the clear (it
// could not read anything else); the writer then drops the transport.
func (c *conn) refuse(err error) {
	why := "the handshake did not verify: the two ends hold different secrets, or this was a replay"
	if errors.Is(err, errSecretMismatch) {
		why = errSecretMismatch.Error()
	}
	c.authOut = append([]byte{frameAuth, authFail}, why...)
	c.refusing = &HandshakeError{err}
	c.auth = nil
	c.l.Notify()
}

// completeHandshake starts or resumes the session once the peer is known
// (and authenticated, if required), under l.mu.
func (c *conn) completeHandshake(h *hello, mode sessionMode) {
	l := c.l
	resume := mode != sessionFresh
	switch mode {
	case sessionAdopt:
		for _, f := range l.unacked {
			f.pending, f.sacked, f.fragOff = true, false, 0
		}
		l.log.Info("link up; the peer had not completed the first handshake, our queued data goes again",
			"transport", l.drv.String(), "session", fmt.Sprintf("%016x", l.localID),
			"peer", fmt.Sprintf("%016x", h.Session), "unacked", len(l.unacked))
	case sessionResume:
		l.dropAcked(h.RxNext)
		for _, f := range l.unacked {
			if !f.sacked {
				f.pending = true
			}
		}
		l.stats.Resumes.Add(1)
		l.log.Info("link resumed", "transport", l.drv.String(), "session", fmt.Sprintf("%016x", l.localID),
			"unacked", len(l.unacked))
	default:
		var reason error
		if l.peerID != 0 {
			reason = &PeerRestartedError{}
			l.log.Warn("peer started a new session; streams of the old one are reset",
				"old_peer", fmt.Sprintf("%016x", l.peerID), "new_peer", fmt.Sprintf("%016x", h.Session))
		}
		l.resetSession(reason)
		l.peerID = h.Session
		l.established = true
		l.stats.Sessions.Add(1)
		l.log.Info("link up", "transport", l.drv.String(), "session", fmt.Sprintf("%016x", l.localID),
			"peer", fmt.Sprintf("%016x", h.Session))
	}
	l.startCompression(h, mode)
	l.peerMax = max(64, int(h.MaxPayload))
	l.peerWindow = max(1, int(h.Window))
	c.complete = true
	c.wasUp = true
	l.linkBack()
	l.state = StateUp
	l.up.SessionStart(SessionInfo{Local: l.localID, Peer: l.peerID, Resumed: resume, MaxPayload: l.payloadLimit()})
	l.Notify()
}

// abandon gives the session up after a protocol violation by the peer:
// we tell the peer why, reset every stream, and start afresh under a new
// session id.
func (c *conn) abandon(err error) {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log.Error("abandoning session", "err", err)
	c.closeDue = err.Error()
	l.resetSession(err)
	l.peerID = 0
	l.localID = newSessionID()
	c.newRound(time.Now())
	l.Notify()
}

// onData accepts data frame seq, under l.mu.
func (c *conn) onData(seq uint16, payload []byte, deliver [][]byte, now time.Time) [][]byte {
	l := c.l
	switch {
	case seq == l.rxNext:
		deliver = append(deliver, payload)
		delete(l.partials, seq)
		l.rxNext++
		for {
			p, ok := l.ooo[l.rxNext]
			if !ok {
				break
			}
			delete(l.ooo, l.rxNext)
			deliver = append(deliver, p)
			l.rxNext++
		}
	case seqLess(l.rxNext, seq) && int(seq-l.rxNext) < l.cfg.Window:
		if _, dup := l.ooo[seq]; dup {
			l.stats.FramesDup.Add(1)
		} else {
			l.ooo[seq] = append([]byte(nil), payload...)
		}
	default:
		l.stats.FramesDup.Add(1)
	}
	c.scheduleAck(now)
	return deliver
}

// partial is a data frame being put together from fragments.
type partial struct {
	buf  []byte
	have []bool
	left int
}

// addFragment stores a piece of frame seq, under l.mu, and returns the
// whole payload once every byte of it has arrived.
func (l *Link) addFragment(seq uint16, total, off int, piece []byte) []byte {
	if total == 0 || total > l.cfg.MaxPayload || off+len(piece) > total ||
		!(seq == l.rxNext || seqLess(l.rxNext, seq) && int(seq-l.rxNext) < l.cfg.Window) {
		return nil
	}
	if _, done := l.ooo[seq]; done {
		return nil
	}
	p := l.partials[seq]
	if p == nil || len(p.buf) != total {
		p = &partial{buf: make([]byte, total), have: make([]bool, total), left: total}
		l.partials[seq] = p
	}
	copy(p.buf[off:], piece)
	for i := off; i < off+len(piece); i++ {
		if !p.have[i] {
			p.have[i] = true
			p.left--
		}
	}
	if p.left > 0 {
		return nil
	}
	delete(l.partials, seq)
	return p.buf
}

// scheduleAck arranges for an ack: at once on lossy lines (the sender's
// RTT estimate and loss detection depend on it), a little later on
// reliable ones, where acks only free the sender's buffers.
func (c *conn) scheduleAck(now time.Time) {
	l := c.l
	if !c.ackDue {
		c.ackDue = true
		c.ackAt = now
		if l.props.Reliable {
			c.ackAt = now.Add(5 * time.Millisecond)
		}
	}
	if l.props.Reliable && int(l.rxNext-l.lastAckSent) >= max(1, l.cfg.Window/4) {
		c.ackAt = now
	}
	l.Notify()
}

// onAck processes a cumulative ack and selective-ack bitmap, under l.mu.
func (c *conn) onAck(next uint16, sack uint64, now time.Time) {
	l := c.l
	if seqLess(l.nextSeq, next) {
		return // acknowledges frames never sent: ignore
	}
	var maxTx uint64
	progress := false
	for len(l.unacked) > 0 && seqLess(l.unacked[0].seq, next) {
		f := l.unacked[0]
		if !f.resent {
			l.rttSample(now.Sub(f.sentAt))
			l.frameFate(false)
			c.queueSample(f, now)
		}
		maxTx = max(maxTx, f.tx)
		l.unacked[0] = nil
		l.unacked = l.unacked[1:]
		l.freeFrame(f)
		progress = true
	}
	if sack != 0 {
		for _, f := range l.unacked {
			d := f.seq - next - 1
			if d < 64 && sack&(1<<d) != 0 && !f.sacked {
				if !f.resent {
					l.frameFate(false)
				}
				f.sacked = true
				f.pending = false
				maxTx = max(maxTx, f.tx)
				progress = true
			}
		}
	}
	// The line delivers in order: a frame sent before one that arrived,
	// and still missing, was lost. Send it again now.
	for _, f := range l.unacked {
		if !f.sacked && !f.pending && f.tx < maxTx {
			f.pending = true
			l.frameFate(true)
		}
	}
	if progress {
		l.rto = l.computeRTO()
		l.Notify()
	}
}

// queueWindow is how long the least ack delay is gathered before the
// writer acts on it.
const queueWindow = time.Second

// queueSample learns from an ack how long data frame f waited in queues
// below us (the OS, a driver, a USB adapter) before reaching the line:
// the time to its ack beyond its own time on the line. The least such
// delay over a window is a standing queue that our pacing, at the nominal
// rate, would never drain (it starts when the line is slower than its
// nominal rate, or stalls once); the writer then pauses that long. Under
// l.mu.
func (c *conn) queueSample(f *outFrame, now time.Time) {
	l := c.l
	if l.props.LineRate == 0 || f.wireLen == 0 {
		return
	}
	excess := now.Sub(f.sentAt) - lineTime(f.wireLen, l.props.LineRate)
	if c.qwin.IsZero() || excess < c.qmin {
		c.qmin = excess
	}
	if c.qwin.IsZero() {
		c.qwin = now
	}
	if now.Sub(c.qwin) < queueWindow {
		return
	}
	// What an ack costs without a queue: our pacing slack, the ack's own
	// time on the line, and a few milliseconds of scheduling.
	base := c.pace.slack + lineTime(32, l.props.LineRate) + 3*time.Millisecond
	if c.qmin > base {
		c.drainDue += c.qmin - base/2
		if c.trace {
			l.log.Debug("draining a standing queue", "delay", c.qmin)
		}
	}
	c.qwin = now
	c.qmin = 0
}

// dropAcked forgets unacked frames before next (the peer has them).
func (l *Link) dropAcked(next uint16) {
	for len(l.unacked) > 0 && seqLess(l.unacked[0].seq, next) {
		l.freeFrame(l.unacked[0])
		l.unacked[0] = nil
		l.unacked = l.unacked[1:]
	}
}

func (l *Link) rttSample(r time.Duration) {
	if r <= 0 {
		r = time.Microsecond
	}
	if l.srtt == 0 {
		l.srtt, l.rttvar = r, r/2
	} else {
		d := l.srtt - r
		if d < 0 {
			d = -d
		}
		l.rttvar = (3*l.rttvar + d) / 4
		l.srtt = (7*l.srtt + r) / 8
	}
}

func (l *Link) computeRTO() time.Duration {
	if l.srtt == 0 {
		return l.initialRTO()
	}
	return max(l.minRTO(), min(l.srtt+4*l.rttvar, 10*time.Second))
}

// sack returns the selective-ack bitmap of frames held out of order.
func (l *Link) sack() uint64 {
	var bits uint64
	if len(l.ooo) == 0 {
		return 0
	}
	for i := range 64 {
		if _, ok := l.ooo[l.rxNext+1+uint16(i)]; ok {
			bits |= 1 << i
		}
	}
	return bits
}

func frameName(t byte) string {
	switch t {
	case frameHello:
		return "hello"
	case frameData:
		return "data"
	case frameAck:
		return "ack"
	case framePing:
		return "ping"
	case framePong:
		return "pong"
	case frameClose:
		return "close"
	case frameAuth:
		return "auth"
	case frameFrag:
		return "fragment"
	}
	return fmt.Sprintf("unknown(%d)", t)
}
