package link

import (
	"encoding/binary"
	"time"
)

// next picks the frame to send now and encodes it into wire. When there is
// nothing to send it returns nil and how long to wait at most.
func (c *conn) next(wire, scratch []byte) (out []byte, wait time.Duration, isClose bool, err error) {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if silent := now.Sub(c.lastRecv); silent > l.cfg.DeadTimeout && c.deadApplies() {
		return nil, 0, false, errPeerSilent{silent}
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
	// Our goodbyes first: an abandoned session, or shutting down.
	if c.closeDue != "" {
		out = c.emit(wire, append(append(scratch, frameClose), c.closeDue...))
		c.closeDue = ""
		return out, 0, false, nil
	}
	if l.closing && c.complete && !c.closeDone {
		return c.emit(wire, append(append(scratch, frameClose), l.closeWhy...)), 0, true, nil
	}
	if c.helloDue || (!c.roundDone && now.Sub(c.lastHello) >= helloInterval) {
		c.helloDue = false
		c.lastHello = now
		h := c.ourHello()
		out = c.emit(wire, h.marshal(scratch))
		c.toldRaw = c.toldRaw || h.Flags&helloRaw != 0
		return out, 0, false, nil
	}
	if a := c.auth; a != nil && !a.done && a.initiator && a.send == nil && c.authOut == nil &&
		now.Sub(c.authLast) >= helloInterval {
		c.authOut = c.authMsg // no reply yet: say it again
	}
	if c.authOut != nil {
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
		return out, 0, false, nil
	}
	if c.refusing != nil {
		// Give the peer a moment to read why before hanging up.
		if d := time.Second - now.Sub(c.refusedAt); d > 0 {
			return nil, d, false, nil
		}
		return nil, 0, false, c.refusing
	}
	wait = time.Hour
	deadline := func(t time.Time) {
		wait = min(wait, max(t.Sub(now), time.Millisecond))
	}
	if c.deadApplies() {
		deadline(c.lastRecv.Add(l.cfg.DeadTimeout))
	}
	if !c.complete {
		deadline(c.lastHello.Add(helloInterval))
		if a := c.auth; a != nil && !a.done && a.initiator && a.send == nil {
			deadline(c.authLast.Add(helloInterval)) // repeat our handshake message
		}
		deadline(c.hsStart.Add(l.cfg.HandshakeTimeout))
		return nil, wait, false, nil
	}
	if c.pongDue {
		c.pongDue = false
		return c.emit(wire, binary.BigEndian.AppendUint32(append(scratch, framePong), c.pongToken)), 0, false, nil
	}
	sack := l.sack()
	if c.ackDue && sack != 0 {
		return c.emitAck(wire, scratch, sack), 0, false, nil
	}
	// Interactive data that overtakes a frame cut short for it.
	if c.urgentDue {
		c.urgentDue = false
		if f := c.pullUrgent(); f != nil {
			return c.emitData(wire, f, now), 0, false, nil
		}
	}
	// Frames to send again, oldest first.
	if f := l.pendingFrame(now); f != nil {
		l.stats.FramesResent.Add(1)
		return c.emitData(wire, f, now), 0, false, nil
	}
	// The payload of a frame cut short, under its new number.
	if f := l.takeHeld(); f != nil {
		return c.emitData(wire, f, now), 0, false, nil
	}
	// New data, pulled from the layer above while the window allows.
	if l.established && !l.closing && l.mayPull() {
		if f := c.pull(); f != nil {
			c.preemptible = f
			l.stats.PayloadOut.Add(uint64(f.plain))
			l.stats.CompressedOut.Add(uint64(len(f.raw) - dataHeader))
			return c.emitData(wire, f, now), 0, false, nil
		}
	}
	if c.ackDue {
		if !now.Before(c.ackAt) {
			return c.emitAck(wire, scratch, sack), 0, false, nil
		}
		deadline(c.ackAt)
	}
	if now.Sub(c.lastSend) >= l.cfg.KeepAlive {
		c.pingToken++
		c.pingSent = now
		return c.emit(wire, binary.BigEndian.AppendUint32(append(scratch, framePing), c.pingToken)), 0, false, nil
	}
	deadline(c.lastSend.Add(l.cfg.KeepAlive))
	if d, ok := l.rtoDeadline(); ok {
		deadline(d)
	}
	return nil, wait, false, nil
}
