package link

import (
	"errors"
	"fmt"
	"time"
)

// handshake is one transport's hello round and, with a shared secret, its
// authentication (auth.go), guarded by l.mu. A round starts afresh
// (newRound) on a new transport, when the peer restarts its handshake, and
// when a session ends on this transport.
type handshake struct {
	roundDone  bool       // our hello round completed on this transport
	complete   bool       // session up on this transport (authenticated if required)
	auth       *authState // the authentication under way or done, nil without a secret
	authOut    []byte     // an AUTH frame to send
	authLast   time.Time  // when our last AUTH message went out
	authMsg    []byte     // our last handshake message, repeated if lost
	authPeer   []byte     // the peer's last handshake message
	refusing   error      // authentication failed: drop the transport once the peer is told
	refusedAt  time.Time  // when we told the peer
	waitLogged bool       // we said we wait for the peer
	wasUp      bool       // a session was up on this transport
	peerHello  *hello     // the peer's latest hello on this transport
	helloPrev  uint64     // the PeerPrev our hellos carry in this round
	helloDue   bool       // a hello must be sent now
	lastHello  time.Time  // when our last hello went out
	hellosSent int        // hellos sent on this transport (fecClearHello)
	hsStart    time.Time  // when this handshake round began
}

// helloInterval is how often an unanswered hello is repeated.
const helloInterval = time.Second

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
		if err := c.checkName(h); err != nil {
			c.refuse(err)
			return nil
		}
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
	// with its first completed session: a CLOSE frame or an abandoned
	// session gives the end a new one, see conn.handle and conn.abandon),
	// so it accepted none of our data and sent none: everything we queued
	// is sent again from the first sequence number, and our streams go on.
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
	var ne *NameError
	switch {
	case errors.Is(err, errSecretMismatch):
		why = errSecretMismatch.Error()
	case errors.As(err, &ne):
		why = ne.Error()
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
		l.resendAll(true)
		l.log.Info("link up; the peer had not completed the first handshake, our queued data goes again",
			"transport", l.drv.String(), "session", fmt.Sprintf("%016x", l.localID),
			"peer", fmt.Sprintf("%016x", h.Session), "unacked", len(l.unacked))
	case sessionResume:
		l.dropAcked(h.RxNext)
		l.resendAll(false)
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
	c.fecSessionStart(h)
	l.seedSize(int(c.framesGood.Load()), int(c.framesBad.Load()))
	if c.bus != nil && h.Flags&helloHalfDuplex == 0 {
		l.log.Warn("the peer runs full duplex on a half-duplex line: frames will collide whenever both ends send; give both ends --half-duplex")
	}
	l.peerServices = helloServices(h.Ext)
	l.peerName = helloName(h.Ext)
	l.peerMax = int(h.MaxPayload) // at least MinPayload: parseHello
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

// ourHello is the hello we send now.
func (c *conn) ourHello() hello {
	l := c.l
	h := hello{
		Version:    ProtocolVersion,
		Session:    l.localID,
		PeerPrev:   c.helloPrev,
		RxNext:     l.rxNext,
		MaxPayload: uint32(l.acceptMax()),
		Window:     uint16(l.cfg.Window),
		Ext:        appendHelloExt(nil, l.cfg.Services, l.cfg.Name, c.fecRead()),
	}
	if c.peerHello != nil {
		h.Echo = c.peerHello.Session
	}
	if c.roundDone {
		h.Flags |= helloDone
	}
	if l.cfg.Secret != nil {
		h.Flags |= helloAuth
	}
	if l.props.Reliable {
		h.Flags |= helloRaw
	}
	if l.offersCompression() {
		h.Flags |= helloCompress
	}
	if c.bus != nil {
		h.Flags |= helloHalfDuplex
	}
	if c.fec != nil {
		h.Flags |= helloFEC
	}
	return h
}

func (c *conn) handshakeTimeout() error {
	var why string
	switch {
	case c.peerHello != nil:
		why = "the peer's hellos arrive but ours do not reach it"
	case c.bytesIn.Load() == 0:
		why = "the peer sent nothing; is a sockmux link running at the other end?"
	default:
		why = fmt.Sprintf("the peer sent %d bytes that are not sockmux frames; is it sockmux, with the same line settings?", c.bytesIn.Load())
	}
	return &HandshakeError{fmt.Errorf("no sockmux handshake within %v: %s", c.l.cfg.HandshakeTimeout, why)}
}
