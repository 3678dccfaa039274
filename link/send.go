package link

import (
	"context"
	"time"
)

// writeLoop waits until the line can take a frame, picks the most urgent
// frame, writes it, and repeats, until the transport breaks or ctx ends.
func (c *conn) writeLoop(ctx context.Context) error {
	l := c.l
	// The wire buffer starts small and keeps what a long frame grew it
	// to: an idle link holds little (a hub has many).
	wire := make([]byte, 0, min(cobsMaxEncoded(l.cfg.MaxPayload+frameOverhead)+1, initialWireBuffer))
	scratch := make([]byte, 0, 64)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// A delimiter first: whatever the peer's decoder held is cut off.
	if _, err := (wireOut{c}).Write([]byte{0}); err != nil {
		return err
	}
	for {
		l.mu.Lock()
		var fecLevel, fecBlock int
		if c.fec != nil {
			fecLevel, fecBlock = c.fec.txLevel, c.fec.txBlock
		}
		drain := c.drainDue
		c.drainDue = 0
		interactive := l.interactiveAbout()
		c.pace.setQuiet(!interactive)
		if r := l.lineRate(); r != c.pace.rate && c.pace.rate > 0 {
			c.pace.setRate(r) // SetLineRate (rate.go)
		}
		if f := c.writing; f != nil {
			c.writing = nil // written: its buffer may be reused
			if f.freeLater {
				putFrame(f)
			}
		}
		l.mu.Unlock()
		if err := c.applyFEC(fecLevel, fecBlock); err != nil {
			return err
		}
		c.pace.delay(drain)
		if err := c.pace.ready(ctx, c.broken); err != nil {
			return c.brokenErr(err)
		}
		if c.bus != nil {
			if err := c.bus.take(ctx, c.broken, interactive); err != nil {
				return c.brokenErr(err)
			}
		}
		out, wait, isClose, err := c.next(wire[:0], scratch[:0])
		if err != nil {
			return err
		}
		l.mu.Lock()
		pre := c.preemptible
		c.preemptible = nil
		// Handshake frames (hello, AUTH) go in a FEC block of their own,
		// after a delimiter of their own: a peer without the code finds
		// them whole between the block's bytes.
		alone := !c.complete || c.lastStep == stepHello || c.lastStep == stepAuth
		clear := c.lastStep == stepHello && c.fecClearHello()
		if c.writing == nil && cap(out) > cap(wire) {
			wire = out[:0] // appended to wire, which grew: keep it
		}
		l.mu.Unlock()
		if out == nil {
			// Nothing more to send now: the block being filled goes.
			if err := c.flushOut(); err != nil {
				return err
			}
			if c.bus != nil {
				c.bus.yield()
			}
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
		if alone && c.fec != nil {
			out = append([]byte{0}, out...)
		}
		w := c.out()
		if clear {
			// Past the block being filled, on the line as it is.
			if err := c.flushOut(); err != nil {
				return err
			}
			w = wireOut{c}
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
		l.stats.FramesOut.Add(1)
		if alone || isClose {
			if err := c.flushOut(); err != nil {
				return err
			}
		}
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

// initialWireBuffer is the writer's buffer until a frame needs more.
const initialWireBuffer = 2 << 10

// pull asks the upper layer for a payload, with l.mu released meanwhile,
// and numbers it as the next data frame. nil when there is nothing.
func (c *conn) pull() *outFrame {
	l := c.l
	limit := min(l.payloadLimit(), l.sizeCap)
	if l.lineRate() > 0 && l.interactiveAbout() {
		limit = min(limit, c.shortFrame())
	}
	var class Class
	f := c.fillFrame(false, func(p *payload) int {
		n, cl := l.up.Fill(p.room, p.budget(limit))
		class = cl
		return n
	})
	if f != nil {
		switch class {
		case ClassInteractive:
			l.lastInteractive = time.Now()
		case ClassBulkQuiet:
			l.lastInteractive = time.Time{}
		}
	}
	return f
}

// fillFrame has fill put a payload into a new data frame, with l.mu
// released meanwhile, compresses it (once: what is retransmitted is the
// compressed frame) and numbers it as the next one; nil when fill put
// nothing or the session ended while it ran (what it took belonged to
// streams that no longer exist). fill gets the payload's room for plain
// bytes (compress.go); bypass keeps the payload out of the compression
// history (see compressor.compress).
func (c *conn) fillFrame(bypass bool, fill func(p *payload) int) *outFrame {
	l := c.l
	gen := l.gen
	p := l.newPayload()
	l.mu.Unlock()
	f := p.finish(fill(&p), bypass)
	l.mu.Lock()
	if f == nil {
		return nil
	}
	if gen != l.gen || !l.established {
		putFrame(f)
		return nil
	}
	f.raw[0] = frameData
	l.sequence(f)
	return f
}

// pullUrgent asks the upper layer for interactive data that may overtake
// the held frame, with l.mu released meanwhile, and numbers it in the held
// frame's place.
func (c *conn) pullUrgent() *outFrame {
	limit := min(c.l.payloadLimit(), 256)
	// It goes out of the compression history: it takes the number of a
	// frame compressed before it.
	f := c.fillFrame(true, func(p *payload) int { return c.preempter.FillUrgent(p.room[:limit-p.hdr]) })
	if f != nil {
		c.l.stats.Preemptions.Add(1)
		c.l.lastInteractive = time.Now()
	}
	return f
}

// writeSliced writes data frame out (the first transmission of f) a slice
// at a time at the line's pace, and cuts it short when interactive data
// is waiting and much of the frame is left: the frame's number goes to a
// short frame with that data, and f follows under the next number.
func (c *conn) writeSliced(ctx context.Context, out []byte, f *outFrame) error {
	l := c.l
	// Slices of equal length: as few as sliceLen allows, none a short
	// remainder that costs a wake-up of its own.
	slice := evenSlice(len(out), c.pace.sliceLen())
	cutAbove := max(2*int(time.Duration(c.pace.rate)*sliceInteractive/time.Second), c.shortFrame())
	for off := 0; off < len(out); {
		if off > 0 {
			if err := c.pace.ready(ctx, c.broken); err != nil {
				return c.brokenErr(err)
			}
			// Cut only what would delay interactive data more than a
			// short frame does, or two interactive slices: cutting
			// wastes what was sent.
			if len(out)-off > cutAbove && c.preempter.Urgent() {
				if cut := cobsCut(out, off); cut > 0 {
					if err := c.abortFrame(out[off:cut], f); err != nil {
						return err
					}
					return nil
				}
			}
		}
		end := min(off+slice, len(out))
		if _, err := c.out().Write(out[off:end]); err != nil {
			return err
		}
		off = end
	}
	l.stats.FramesOut.Add(1)
	return nil
}

// evenSlice is the length of each of the fewest slices, none longer than
// most, that n bytes split into.
func evenSlice(n, most int) int {
	if n <= most {
		return n
	}
	k := (n + most - 1) / most
	return (n + k - 1) / k
}

// shortFrame is the length of a frame on a paced line while interactive
// traffic shares it.
func (c *conn) shortFrame() int {
	return max(128, int(time.Duration(c.l.lineRate())*interactiveFrameTime/time.Second))
}

// abortFrame ends frame f on the wire after rest, with a delimiter where
// its encoding is incomplete (the receiver drops it for certain, whatever
// the CRC), and takes f back to send again after the interactive data.
func (c *conn) abortFrame(rest []byte, f *outFrame) error {
	l := c.l
	if _, err := c.out().Write(append(rest[:len(rest):len(rest)], 0)); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unsend(f) {
		c.urgentDue = true
	} // else not ours to renumber any more: it goes again as it is
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
	if l.lineRate() == 0 || f.wireLen == 0 || c.bus != nil {
		// On a half-duplex line every ack waits for the peer's turn:
		// that is no queue to drain.
		return
	}
	excess := now.Sub(f.sentAt) - lineTime(c.fecWire(f.wireLen), l.lineRate())
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
	// time on the line, the peer's gathering (reader.go: the end of a
	// frame may wait that long in the peer's OS before it is read) and a
	// few milliseconds of scheduling.
	// With the FEC stage, a frame may wait for its block to fill.
	base := c.pace.leadNow() + lineTime(32, l.lineRate()) + gatherBulk + 3*time.Millisecond + c.fecLatency()
	if c.qmin > base {
		c.drainDue += c.qmin - base/2
		if c.trace {
			l.log.Debug("draining a standing queue", "delay", c.qmin)
		}
	}
	c.qwin = now
	c.qmin = 0
}
