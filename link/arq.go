package link

import (
	"encoding/binary"
	"math"
	"time"
)

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

// sequence numbers f as the next data frame, under l.mu.
func (l *Link) sequence(f *outFrame) {
	f.seq = l.nextSeq
	binary.BigEndian.PutUint16(f.raw[1:], f.seq)
	l.nextSeq++
	l.unacked = append(l.unacked, f)
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
