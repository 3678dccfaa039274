package link

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// writeLoop waits until the line can take a frame, picks the most urgent
// frame, writes it, and repeats, until the transport breaks or ctx ends.
func (c *conn) writeLoop(ctx context.Context) error {
	l := c.l
	wire := make([]byte, 0, cobsMaxEncoded(l.cfg.MaxPayload+frameOverhead)+1)
	scratch := make([]byte, 0, 64)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// A delimiter first: whatever the peer's decoder held is cut off.
	if _, err := c.t.Write([]byte{0}); err != nil {
		return err
	}
	for {
		l.mu.Lock()
		drain := c.drainDue
		c.drainDue = 0
		if f := c.writing; f != nil {
			c.writing = nil // written: its buffer may be reused
			if f.freeLater {
				putFrame(f)
			}
		}
		l.mu.Unlock()
		c.pace.delay(drain)
		if err := c.pace.ready(ctx, c.broken); err != nil {
			return c.brokenErr(err)
		}
		out, wait, isClose, err := c.next(wire[:0], scratch[:0])
		if err != nil {
			return err
		}
		l.mu.Lock()
		pre := c.preemptible
		c.preemptible = nil
		l.mu.Unlock()
		if out == nil {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-c.broken:
				return c.err
			case <-l.wake:
			case <-timer.C:
			}
			continue
		}
		if pre != nil && c.preempter != nil && c.pace.rate > 0 {
			if err := c.writeSliced(ctx, out, pre); err != nil {
				return err
			}
			continue
		}
		if _, err := c.t.Write(out); err != nil {
			return err
		}
		c.pace.sent(len(out))
		l.stats.BytesOut.Add(uint64(len(out)))
		l.stats.FramesOut.Add(1)
		if isClose {
			l.mu.Lock()
			c.closeDone = true
			l.mu.Unlock()
			select {
			case <-l.closeSent:
			default:
				close(l.closeSent)
			}
		}
	}
}

func (c *conn) brokenErr(err error) error {
	select {
	case <-c.broken:
		return c.err
	default:
		return err
	}
}

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
	if f := c.pendingFrame(now); f != nil {
		l.stats.FramesResent.Add(1)
		return c.emitData(wire, f, now), 0, false, nil
	}
	// The payload of a frame cut short, under its new number.
	if f := l.held; f != nil {
		l.held = nil
		l.sequence(f) // not to be cut again: it must get through
		return c.emitData(wire, f, now), 0, false, nil
	}
	// New data, pulled from the layer above while the window allows.
	if l.established && !l.closing && len(l.unacked) < l.sendWindow() && l.inflightRoom() {
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
	if d, ok := c.rtoDeadline(); ok {
		deadline(d)
	}
	return nil, wait, false, nil
}

// pull asks the upper layer for a payload, with l.mu released meanwhile,
// and numbers it as the next data frame. nil when there is nothing.
func (c *conn) pull() *outFrame {
	l := c.l
	limit := min(l.payloadLimit(), l.sizeCap)
	return c.fillFrame(false, func(room []byte, hdr int) int {
		if c.preempter != nil && l.props.LineRate > 0 && c.preempter.Interactive() {
			limit = min(limit, c.shortFrame())
		}
		return l.up.Fill(room[:limit-hdr])
	})
}

// fillFrame has fill put a payload into a new data frame, with l.mu
// released meanwhile, compresses it (once: what is retransmitted is the
// compressed frame) and numbers it as the next one; nil when fill put
// nothing or the session ended while it ran (what it took belonged to
// streams that no longer exist). fill gets the room after hdr bytes of
// codec header, which the payload's limit includes; bypass keeps the
// payload out of the compression history (see compressor.encode).
func (c *conn) fillFrame(bypass bool, fill func(room []byte, hdr int) int) *outFrame {
	l := c.l
	gen := l.gen
	z, hdr := l.ztx, 0
	if l.zOn {
		hdr = codecHeader
	}
	f := getFrame(l.cfg.MaxPayload)
	l.mu.Unlock()
	n := fill(f.raw[dataHeader+hdr:len(f.raw)-crcSize], hdr)
	f.plain = n
	if n > 0 && z != nil {
		n = z.encode(f.raw[dataHeader:dataHeader+hdr+n], bypass)
	} else if n > 0 {
		n += hdr
	}
	l.mu.Lock()
	if n == 0 || gen != l.gen || !l.established {
		putFrame(f)
		return nil
	}
	f.raw = f.raw[:dataHeader+n]
	f.raw[0] = frameData
	l.sequence(f)
	return f
}

// sequence numbers f as the next data frame, under l.mu.
func (l *Link) sequence(f *outFrame) {
	f.seq = l.nextSeq
	binary.BigEndian.PutUint16(f.raw[1:], f.seq)
	l.nextSeq++
	l.unacked = append(l.unacked, f)
}

// pullUrgent asks the upper layer for interactive data that may overtake
// the held frame, with l.mu released meanwhile, and numbers it in the held
// frame's place.
func (c *conn) pullUrgent() *outFrame {
	limit := min(c.l.payloadLimit(), 256)
	// It goes out of the compression history: it takes the number of a
	// frame compressed before it.
	f := c.fillFrame(true, func(room []byte, hdr int) int { return c.preempter.FillUrgent(room[:limit-hdr]) })
	if f != nil {
		c.l.stats.Preemptions.Add(1)
	}
	return f
}

// writeSliced writes data frame out (the first transmission of f) a slice
// at a time at the line's pace, and cuts it short when interactive data
// is waiting and much of the frame is left: the frame's number goes to a
// short frame with that data, and f follows under the next number.
func (c *conn) writeSliced(ctx context.Context, out []byte, f *outFrame) error {
	l := c.l
	slice := c.pace.sliceLen()
	for off := 0; off < len(out); {
		if off > 0 {
			if err := c.pace.ready(ctx, c.broken); err != nil {
				return c.brokenErr(err)
			}
			// Cut only what would delay interactive data more than a
			// short frame does: cutting wastes what was sent.
			if len(out)-off > max(2*slice, c.shortFrame()) && c.preempter.Urgent() {
				if cut := cobsCut(out, off); cut > 0 {
					if err := c.abortFrame(out[off:cut], f); err != nil {
						return err
					}
					return nil
				}
			}
		}
		end := min(off+slice, len(out))
		if _, err := c.t.Write(out[off:end]); err != nil {
			return err
		}
		c.pace.sent(end - off)
		l.stats.BytesOut.Add(uint64(end - off))
		off = end
	}
	l.stats.FramesOut.Add(1)
	return nil
}

// shortFrame is the length of a frame on a paced line while interactive
// traffic shares it.
func (c *conn) shortFrame() int {
	return max(128, int(time.Duration(c.l.props.LineRate)*interactiveFrameTime/time.Second))
}

// abortFrame ends frame f on the wire after rest, with a delimiter where
// its encoding is incomplete (the receiver drops it for certain, whatever
// the CRC), and takes f back to send again after the interactive data.
func (c *conn) abortFrame(rest []byte, f *outFrame) error {
	l := c.l
	if _, err := c.t.Write(append(rest[:len(rest):len(rest)], 0)); err != nil {
		return err
	}
	c.pace.sent(len(rest) + 1)
	l.stats.BytesOut.Add(uint64(len(rest) + 1))
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.unacked); n > 0 && l.unacked[n-1] == f && f.seq == l.nextSeq-1 && l.held == nil {
		l.unacked = l.unacked[:n-1]
		l.nextSeq--
		l.txCount-- // never reached the peer: it orders nothing
		f.tx, f.resent, f.pending = 0, false, false
		l.held = f
		c.urgentDue = true
	} else {
		f.pending = true // not ours to renumber any more: resend as is
	}
	return nil
}

// cobsCut returns the least position at or after off at which encoded
// frame enc, cut and followed by a delimiter, fails COBS decoding for
// certain (inside a block whose data has not all been written); 0 when
// there is none before the frame's end.
func cobsCut(enc []byte, off int) int {
	for pos := 0; pos < len(enc)-1; {
		code := int(enc[pos])
		end := pos + code // the block is enc[pos:end]
		switch {
		case off > pos && off < end:
			return off
		case off <= pos && code >= 2:
			return pos + 1
		}
		pos = end
	}
	return 0
}

// pendingFrame returns the oldest frame due for retransmission, marking
// frames whose timer ran out.
func (c *conn) pendingFrame(now time.Time) *outFrame {
	l := c.l
	if len(l.unacked) == 0 {
		return nil
	}
	if !l.props.Reliable {
		if d, ok := c.rtoDeadline(); ok && !now.Before(d) {
			// Timeout: everything not known to have arrived and sent
			// more than an RTO ago goes again; back the timer off.
			for _, f := range l.unacked {
				if !f.sacked && now.Sub(f.sentAt) >= l.rto {
					f.pending = true
					l.frameFate(true)
				}
			}
			l.rto = min(2*l.rto, l.maxBackoff())
		}
	}
	for _, f := range l.unacked {
		if f.pending {
			return f
		}
	}
	return nil
}

// rtoDeadline is when the oldest unacknowledged frame times out.
func (c *conn) rtoDeadline() (time.Time, bool) {
	l := c.l
	if l.props.Reliable {
		return time.Time{}, false
	}
	for _, f := range l.unacked {
		if !f.sacked && !f.pending {
			return f.sentAt.Add(l.rto), true
		}
	}
	return time.Time{}, false
}

// emitData encodes data frame f with the current ack. A frame too long
// for the line's error rate now is resent in fragments, one per call.
func (c *conn) emitData(wire []byte, f *outFrame, now time.Time) []byte {
	l := c.l
	if f.tx != 0 {
		f.resent = true
		if payload := f.raw[dataHeader:]; len(payload) > 2*l.sizeCap {
			return c.emitFragment(wire, f, payload, now)
		}
	}
	binary.BigEndian.PutUint16(f.raw[3:], l.rxNext)
	l.lastAckSent = l.rxNext
	if len(l.ooo) == 0 {
		c.ackDue = false
	}
	l.txCount++
	f.tx = l.txCount
	f.sentAt = now
	f.pending = false
	var out []byte
	if c.raw() && c.auth == nil {
		out = c.emitInPlace(f)
		c.writing = f
	} else {
		out = c.emit(wire, f.raw)
	}
	f.wireLen = len(out)
	return out
}

// emitInPlace encodes data frame f as a length-prefixed frame in its own
// buffer, which has room for the header before it and the CRC after it:
// the payload is written to the transport from where the upper layer put
// it, without a copy. The writer is done with the buffer before f can be
// acknowledged and reused.
func (c *conn) emitInPlace(f *outFrame) []byte {
	c.note(f.raw)
	return sealRaw(f.head[:rawHeader+len(f.raw)], 0)
}

// emitFragment sends the next piece of f; the retransmission is complete
// when the last piece is out.
func (c *conn) emitFragment(wire []byte, f *outFrame, payload []byte, now time.Time) []byte {
	l := c.l
	end := min(len(payload), f.fragOff+l.sizeCap)
	frag := make([]byte, 0, fragHeader+end-f.fragOff+crcSize)
	frag = append(frag, frameFrag)
	frag = binary.BigEndian.AppendUint16(frag, f.seq)
	frag = binary.BigEndian.AppendUint16(frag, l.rxNext)
	frag = binary.BigEndian.AppendUint16(frag, uint16(len(payload)))
	frag = binary.BigEndian.AppendUint16(frag, uint16(f.fragOff))
	frag = append(frag, payload[f.fragOff:end]...)
	l.lastAckSent = l.rxNext
	f.fragOff = end
	if end == len(payload) {
		f.fragOff = 0
		l.txCount++
		f.tx = l.txCount
		f.sentAt = now
		f.pending = false
	}
	return c.emit(wire, frag)
}

func (c *conn) emitAck(wire, scratch []byte, sack uint64) []byte {
	c.ackDue = false
	c.l.lastAckSent = c.l.rxNext
	return c.emit(wire, ackFrame(scratch, c.l.rxNext, sack))
}

// emit encodes one frame for the wire, sealed once keys exist.
func (c *conn) emit(wire, frame []byte) []byte {
	c.note(frame)
	sealed := c.auth.sealed(frame)
	if c.raw() {
		if !sealed {
			return encodeRaw(wire, frame)
		}
		// Sealed straight into the wire buffer, after the header's room.
		start := len(wire)
		return sealRaw(c.auth.sealTo(append(wire, 0, 0, 0, 0, 0), frame), start)
	}
	if sealed {
		frame = c.auth.seal(frame)
	}
	return encodeFrame(wire, frame)
}

// note records that frame goes out now, and logs it at debug level.
func (c *conn) note(frame []byte) {
	c.lastSend = time.Now()
	if c.trace {
		c.l.log.Debug("frame out", "type", frameName(frame[0]), "len", len(frame))
	}
}

// raw reports whether frames go out length-prefixed: the peer reads them
// and our hello saying so went out before, under l.mu.
func (c *conn) raw() bool { return c.rawOut && c.toldRaw }

// ourHello is the hello we send now.
func (c *conn) ourHello() hello {
	l := c.l
	h := hello{
		Version:    ProtocolVersion,
		Session:    l.localID,
		PeerPrev:   c.helloPrev,
		RxNext:     l.rxNext,
		MaxPayload: uint32(l.cfg.MaxPayload),
		Window:     uint16(l.cfg.Window),
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

var framePool sync.Pool

// getFrame returns a frame buffer with room for a payload of n bytes.
func getFrame(n int) *outFrame {
	need := dataHeader + n + crcSize
	if f, ok := framePool.Get().(*outFrame); ok && cap(f.raw) >= need {
		f.raw = f.raw[:need]
		return f
	}
	buf := make([]byte, rawHeader+need)
	return &outFrame{head: buf[:rawHeader], raw: buf[rawHeader:]}
}

func putFrame(f *outFrame) {
	*f = outFrame{head: f.head, raw: f.raw[:0]}
	framePool.Put(f)
}

// freeFrame recycles an acknowledged frame, under l.mu; one the writer is
// still writing from its own buffer goes back once the write returned.
// (The peer cannot acknowledge a frame before the transport took all of
// it, but a frame buffer may serve another link in this process next, and
// only the writer's lock orders its write before that.)
func (l *Link) freeFrame(f *outFrame) {
	if c := l.cur; c != nil && c.writing == f {
		f.freeLater = true
		return
	}
	putFrame(f)
}
