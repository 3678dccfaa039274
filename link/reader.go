package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

func (c *conn) readLoop() error {
	l := c.l
	var src io.Reader = c.t
	var g *gatherer
	if l.lineRate() > 0 && c.bus == nil {
		// Not on a half-duplex line: there an end must hear the peer
		// fall quiet within turnGap, and a gatherer's sleep looks like
		// silence.
		g = newGatherer(c.t, l)
		src = g
	}
	src = c.fecReader(wireIn{src, c})
	if g != nil && c.fec != nil {
		g.need = c.fec.dec.Need
	}
	fr := newFrameReader(src, l.acceptMax()+frameOverhead+sealOverhead, func(err error) {
		l.stats.FramesBad.Add(1)
		c.framesBad.Add(1)
		if isLineDamage(err) {
			c.fecFrames(0, 1)
		} else {
			c.fecFrames(0, 0)
		}
		if c.trace {
			l.log.Debug("frame dropped", "err", err)
		}
		l.mu.Lock()
		started := c.roundDone
		c.lastDamaged = time.Now()
		l.mu.Unlock()
		if l.props.Reliable && started {
			// A reliable transport does not damage frames, and will not
			// repeat this one: start over on a new transport, where
			// everything unacknowledged is sent again.
			c.fail(fmt.Errorf("damaged frame on a reliable transport (%v)", err))
		}
	}, nil)
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
		c.framesGood.Add(1)
		c.fecFrames(1, 0)
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

// Gathering: on a paced line (a serial port) bytes trickle in, a few at a
// time (a UART's FIFO, a USB adapter's packet, a pseudo-terminal's
// writes), and a reader that woke for each trickle would wake a thousand
// times a second while a frame arrives. So after a read that ended inside
// a frame the reader lets the rest gather in the operating system's buffer
// for a while before it reads again (a gatherer): one wake-up per
// gatherTime instead of one per trickle. A read that ends at a frame's
// end is followed by a read at once (nothing is known to be coming), and
// the first read after a quiet line waits only gatherStart for the rest
// of its frame, which is short when it is a keystroke's.
const (
	// gatherInteractive is the gathering time while interactive payloads
	// are about (interactiveSpell): a frame that follows a bulk one waits
	// at most this long in the OS, on each end.
	gatherInteractive = 10 * time.Millisecond
	// gatherBulk is the gathering time once no interactive payload went
	// out for interactiveSpell.
	gatherBulk = 40 * time.Millisecond
	// gatherStart is the wait after the first read of a frame that came
	// on a quiet line.
	gatherStart = 2 * time.Millisecond
	// gatherMaxBytes bounds what may gather: half the 4 KiB a Linux tty
	// buffers, so that a fast UART does not overrun it.
	gatherMaxBytes = 2048
	// gatherBlocked is how long a read must have waited to tell that the
	// line was quiet before it.
	gatherBlocked = time.Millisecond
)

// gatherer is the reader of a paced line's transport: see gatherInteractive.
type gatherer struct {
	r io.Reader
	l *Link
	// need, with the FEC stage, is how many bytes complete the block in
	// progress (fec.Decoder.Need): the gatherer sleeps while they come.
	need     func() int
	inBlocks bool          // the last read was inside a block stream
	waited   bool          // the last read waited for bytes: it caught up with the line
	delay    time.Duration // before the next read: 0, or how long to gather
	since    time.Time     // the delay counts from here (the last read's end)
}

func newGatherer(r io.Reader, l *Link) *gatherer {
	return &gatherer{r: r, l: l}
}

func (g *gatherer) Read(p []byte) (int, error) {
	if g.need != nil {
		if n := g.need(); n >= 0 {
			// In a block stream the bytes tell nothing of frames:
			// once the reads caught up with the line, gather the rest
			// of the block (at most what a tty holds).
			g.delay = 0
			if g.waited {
				g.delay = lineTime(min(n, gatherMaxBytes), g.l.lineRate())
			}
			g.inBlocks = true
		} else if g.inBlocks {
			g.delay = 0 // the last block said plain bytes follow
			g.inBlocks = false
		}
	}
	if g.delay > 0 {
		if d := time.Until(g.since.Add(g.delay)); d > 0 {
			time.Sleep(d)
		}
		g.delay = 0
	}
	start := time.Now()
	n, err := g.r.Read(p)
	now := time.Now()
	g.waited = now.Sub(start) >= gatherBlocked
	if g.inBlocks {
		g.since = now
	}
	if n == 0 || n == len(p) || p[n-1] == 0 {
		return n, err // at a frame's end, or behind: read on at once
	}
	g.since = now
	if g.since.Sub(start) >= gatherBlocked {
		g.delay = max(gatherStart, lineTime(32, g.l.lineRate()))
	} else {
		g.delay = g.gatherTime()
	}
	return n, err
}

// gatherTime is how long bytes gather in the middle of a frame.
func (g *gatherer) gatherTime() time.Duration {
	l := g.l
	l.mu.Lock()
	quiet := !l.interactiveAbout()
	l.mu.Unlock()
	d := gatherInteractive
	if quiet {
		d = gatherBulk
	}
	return max(gatherStart, min(d, lineTime(gatherMaxBytes, g.l.lineRate())))
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
			if errors.Is(err, errNotSockmux) || errors.Is(err, errPeerPayload) || errors.As(err, &ve) {
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
		p, news, had := l.addFragment(seq, total, off, body[fragHeader:])
		switch {
		case p != nil:
			deliver = c.onData(seq, p, deliver, now)
		case had:
			l.stats.FramesDup.Add(1)
			c.scheduleAck(now) // our ack was lost: the sender goes on resending
		case news:
			c.schedulePieces(seq)
		}
	case framePiece:
		seq, total, spans, err := parsePieces(body)
		if err != nil {
			l.stats.FramesBad.Add(1)
			return deliver, nil
		}
		if c.complete && l.heard(seq, total, spans) {
			l.Notify()
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
	case frameFEC:
		c.onFECFrame(body)
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

// onData accepts data frame seq, under l.mu.
func (c *conn) onData(seq uint16, payload []byte, deliver [][]byte, now time.Time) [][]byte {
	deliver, dup := c.l.accept(seq, payload, deliver)
	if dup {
		c.l.stats.FramesDup.Add(1)
	}
	c.scheduleAck(now)
	return deliver
}

// schedulePieces arranges for a PIECES frame telling the sender what we
// hold of frame seq, which arrives in fragments, so that it sends only
// what is missing; pieces arriving back to back share one.
func (c *conn) schedulePieces(seq uint16) {
	if !slices.Contains(c.piecesDue, seq) {
		c.piecesDue = append(c.piecesDue, seq)
	}
	c.l.Notify()
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
	if l.props.Reliable && l.unackedIn() >= max(1, l.cfg.Window/4) {
		c.ackAt = now
	}
	l.Notify()
}

// onAck processes a cumulative ack and selective-ack bitmap, under l.mu.
func (c *conn) onAck(next uint16, sack uint64, now time.Time) {
	if c.l.ack(next, sack, now, func(f *outFrame) { c.queueSample(f, now) }) {
		c.l.Notify()
	}
}
