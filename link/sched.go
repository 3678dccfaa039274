package link

import (
	"encoding/binary"
	"time"
)

// The send scheduler: each time the line can take a frame, which frame
// goes next. The policy is a ladder of steps, most urgent first (step's
// order); sendState says which steps are due now, pick chooses, and
// conn.next runs the step chosen. A step that finds nothing to send (no
// interactive data to overtake with, no payload from the upper layer)
// hands on to the steps below it.

// step is one kind of frame the writer may send, in the order of urgency.
type step uint8

const (
	stepNone    step = iota
	stepAbandon      // CLOSE: we gave the session up (a protocol violation)
	stepGoodbye      // CLOSE: Link.Close, once the session is up
	stepHello        // our hello: due, or repeated while the round is open
	stepAuth         // an AUTH message: new, or ours repeated
	stepRefuse       // authentication failed: wait for the peer to read why, then hang up
	// Steps below need the session up on this transport.
	stepPong    // the answer to the peer's ping
	stepFEC     // the FEC level we want for what the peer sends (fec.go)
	stepSackAck // an ack telling of frames held out of order: the peer resends at once
	stepPieces  // what we hold of a frame arriving in fragments: the peer resends only the rest
	stepUrgent  // interactive data, in the number of a frame cut short for it
	stepResend  // a frame lost or timed out, oldest first
	stepHeld    // the frame cut short, under its new number
	stepPull    // new data from the upper layer, while the window allows
	stepAck     // an ack whose delay ran out
	stepPing    // a keepalive after a silent KeepAlive
	stepCount
)

// firstUpStep is the first step that needs the session up.
const firstUpStep = stepPong

var stepNames = [stepCount]string{"none", "abandon", "goodbye", "hello", "auth", "refuse",
	"pong", "fec", "sack-ack", "pieces", "urgent", "resend", "held", "pull", "ack", "ping"}

func (s step) String() string {
	if s < stepCount {
		return stepNames[s]
	}
	return "step?"
}

// sendState is what the scheduler decides from: which steps are due, and
// whether the session is up on this transport.
type sendState struct {
	due uint32 // bit s: step s is due
	up  bool
}

func (st *sendState) set(s step, due bool) {
	if due {
		st.due |= 1 << s
	}
}

// pick returns the most urgent step due after step after (stepNone: the
// most urgent of all), or stepNone when nothing is. While the session is
// not up only the handshake's steps go; a refusal ends the ladder (the
// transport is dropped).
func pick(st sendState, after step) step {
	for s := after + 1; s < stepCount; s++ {
		if s >= firstUpStep && !st.up {
			return stepNone
		}
		if st.due&(1<<s) != 0 {
			return s
		}
	}
	return stepNone
}

// sendState reports which steps are due now, under l.mu.
func (c *conn) sendState(now time.Time) sendState {
	l := c.l
	st := sendState{up: c.complete}
	st.set(stepAbandon, c.closeDue != "")
	st.set(stepGoodbye, l.closing && c.complete && !c.closeDone)
	st.set(stepHello, c.helloDue || (!c.roundDone && now.Sub(c.lastHello) >= helloInterval))
	st.set(stepAuth, c.authOut != nil || c.authRepeatDue(now) && c.authMsg != nil)
	st.set(stepRefuse, c.refusing != nil)
	if !c.complete {
		return st
	}
	st.set(stepPong, c.pongDue)
	st.set(stepFEC, c.fec != nil && c.fec.due && c.fec.peer)
	st.set(stepSackAck, c.ackDue && l.sack() != 0)
	st.set(stepPieces, len(c.piecesDue) > 0)
	st.set(stepUrgent, c.urgentDue)
	st.set(stepResend, l.resendDue(now))
	st.set(stepHeld, l.held != nil)
	st.set(stepPull, l.established && !l.closing && l.mayPull())
	st.set(stepAck, c.ackDue && !now.Before(c.ackAt))
	st.set(stepPing, !now.Before(c.pingAt()))
	return st
}

// pingAt is when a keepalive is due, under l.mu: after a silent
// KeepAlive. On an idle line one end keeps it alive, the one with the
// greater session id; the other answers its pings, which are sends, and
// pings itself only once it heard nothing for half a KeepAlive more (the
// pinger's pings were lost, or it is gone). Were both to ping, each would
// answer the other too, and their timers, a ping's line time apart, would
// race: four frames and their wake-ups every KeepAlive instead of two.
func (c *conn) pingAt() time.Time {
	l := c.l
	at := c.lastSend.Add(l.cfg.KeepAlive)
	if l.localID < l.peerID {
		if heard := c.lastRecv.Add(l.cfg.KeepAlive + l.cfg.KeepAlive/2); heard.After(at) {
			at = heard
		}
	}
	return at
}

// authRepeatDue reports whether our last handshake message, unanswered,
// is due again.
func (c *conn) authRepeatDue(now time.Time) bool {
	a := c.auth
	return a != nil && !a.done && a.initiator && a.send == nil && c.authOut == nil &&
		now.Sub(c.authLast) >= helloInterval
}

// next picks the frame to send now and encodes it into wire. When there is
// nothing to send it returns nil and how long to wait at most.
func (c *conn) next(wire, scratch []byte) (out []byte, wait time.Duration, isClose bool, err error) {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.After(c.deadAt()) && c.deadApplies() {
		return nil, 0, false, errPeerSilent{now.Sub(c.lastRecv)}
	}
	if !c.complete && now.Sub(c.hsStart) > l.cfg.HandshakeTimeout {
		err := c.handshakeTimeout()
		if l.props.Reliable {
			return nil, 0, false, err
		}
		// On a line (serial) there is nothing to gain from reopening the
		// device, which toggles its modem lines: say why we wait, and go
		// on calling.
		if c.waitLogged {
			l.log.Debug("still waiting for the peer", "err", err)
		} else {
			l.log.Warn("waiting for the peer", "err", err)
			c.waitLogged = true
		}
		c.hsStart = now
	}
	// The state is read again after every step: a step that asks the
	// upper layer for data releases l.mu meanwhile, and the reader may
	// take frames then (an ack must carry the bitmap of the rxNext it
	// names: one from before would claim frames the peer does not hold).
	for s := pick(c.sendState(now), stepNone); s != stepNone; s = pick(c.sendState(now), s) {
		if out, wait, isClose, err = c.runStep(s, wire, scratch, now); out != nil || wait != 0 || err != nil {
			c.lastStep = s
			return out, wait, isClose, err
		}
	}
	return nil, c.idleWait(now), false, nil
}

// runStep sends the frame of step s, under l.mu: out is the encoded frame,
// or nil when the step found nothing to send (or waits, or fails).
func (c *conn) runStep(s step, wire, scratch []byte, now time.Time) (out []byte, wait time.Duration, isClose bool, err error) {
	l := c.l
	switch s {
	case stepAbandon:
		out = c.emit(wire, append(append(scratch, frameClose), c.closeDue...))
		c.closeDue = ""
	case stepGoodbye:
		return c.emit(wire, append(append(scratch, frameClose), l.closeWhy...)), 0, true, nil
	case stepHello:
		c.helloDue = false
		c.lastHello = now
		h := c.ourHello()
		out = c.emit(wire, h.marshal(scratch))
		c.hellosSent++
		c.toldRaw = c.toldRaw || h.Flags&helloRaw != 0
	case stepAuth:
		if c.authOut == nil {
			c.authOut = c.authMsg // no reply yet: say it again
		}
		frame := c.authOut
		c.authOut = nil
		c.authLast = now
		if frame[1] == authFail {
			c.refusedAt = now
		}
		out = c.emit(wire, frame)
		if frame[1] == authConfirm {
			c.authenticated()
		}
	case stepRefuse:
		// Give the peer a moment to read why before hanging up.
		if d := time.Second - now.Sub(c.refusedAt); d > 0 {
			return nil, d, false, nil
		}
		return nil, 0, false, c.refusing
	case stepPong:
		c.pongDue = false
		c.fecKeepAlive()
		out = c.emit(wire, binary.BigEndian.AppendUint32(append(scratch, framePong), c.pongToken))
	case stepFEC:
		out = c.emit(wire, c.fecFrame(scratch))
	case stepSackAck, stepAck:
		out = c.emitAck(wire, scratch)
	case stepPieces:
		out = c.emitPieces(wire, scratch)
	case stepUrgent:
		c.urgentDue = false
		if f := c.pullUrgent(); f != nil {
			out = c.emitData(wire, f, now)
		}
	case stepResend:
		if f := l.pendingFrame(now); f != nil {
			l.stats.FramesResent.Add(1)
			out = c.emitData(wire, f, now)
		}
	case stepHeld:
		if f := l.takeHeld(); f != nil {
			out = c.emitData(wire, f, now)
		}
	case stepPull:
		if f := c.pull(); f != nil {
			c.preemptible = f
			l.stats.PayloadOut.Add(uint64(f.plain))
			l.stats.CompressedOut.Add(uint64(len(f.raw) - dataHeader))
			out = c.emitData(wire, f, now)
		}
	case stepPing:
		c.pingToken++
		c.pingSent = now
		c.fecKeepAlive()
		out = c.emit(wire, binary.BigEndian.AppendUint32(append(scratch, framePing), c.pingToken))
	}
	return out, 0, false, nil
}

// idleWait is how long the writer may sleep when nothing is due: until the
// first of the deadlines that make a step due, under l.mu.
func (c *conn) idleWait(now time.Time) time.Duration {
	l := c.l
	wait := time.Hour
	deadline := func(t time.Time) {
		wait = min(wait, max(t.Sub(now), time.Millisecond))
	}
	if c.deadApplies() {
		deadline(c.deadAt())
	}
	if !c.complete {
		deadline(c.lastHello.Add(helloInterval))
		if a := c.auth; a != nil && !a.done && a.initiator && a.send == nil {
			deadline(c.authLast.Add(helloInterval)) // repeat our handshake message
		}
		deadline(c.hsStart.Add(l.cfg.HandshakeTimeout))
		return wait
	}
	if c.ackDue {
		deadline(c.ackAt)
	}
	deadline(c.pingAt())
	if d, ok := l.rtoDeadline(); ok {
		deadline(d)
	}
	return wait
}
