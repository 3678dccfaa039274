package link

import (
	"encoding/binary"
	"log/slog"
	"math"
	"time"
)

// The link's ARQ: sender numbers data frames, keeps them until the peer
// acknowledges them, and decides what goes again and when; receiver puts
// arriving data frames in order and says what to acknowledge. Both are
// plain state driven by events (a frame sent, an ack, a data frame) and
// the time the caller passes in: no goroutines, no locks (the link holds
// l.mu around every call), no I/O.

// sender is the send side of the ARQ: the send window, the retransmission
// queue, the RTT estimate, the retransmission timer and its backoff, and
// the payload size for the line's error rate.
type sender struct {
	reliable   bool         // the transport neither loses nor damages frames
	lineRate   int          // bytes per second on a paced line, 0 if unpaced
	maxPayload int          // our largest payload
	window     int          // our window, in frames
	log        *slog.Logger // for the frame-size decisions
	// free recycles an acknowledged frame (Link.freeFrame).
	free func(*outFrame)

	peerWindow int // peer's out-of-order buffer, in frames

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
}

func newSender(cfg Config, props Properties, free func(*outFrame)) sender {
	s := sender{
		reliable:   props.Reliable,
		lineRate:   props.LineRate,
		maxPayload: cfg.MaxPayload,
		window:     cfg.Window,
		log:        cfg.Logger,
		free:       free,
		sizeCap:    cfg.MaxPayload,
	}
	s.rto = s.initialRTO()
	return s
}

// reset forgets the session's frames and timing (a session ended).
func (s *sender) reset() {
	s.nextSeq = 0
	s.unacked = nil
	s.held = nil
	s.rto = s.initialRTO()
	s.srtt, s.rttvar = 0, 0
}

// sequence numbers f as the next data frame.
func (s *sender) sequence(f *outFrame) {
	f.seq = s.nextSeq
	binary.BigEndian.PutUint16(f.raw[1:], f.seq)
	s.nextSeq++
	s.unacked = append(s.unacked, f)
}

// transmitted records that the whole of f goes on the line now.
func (s *sender) transmitted(f *outFrame, now time.Time) {
	s.txCount++
	f.tx = s.txCount
	f.sentAt = now
	f.pending = false
}

// unsend takes back f, the last frame numbered, which was cut short on the
// wire before the peer could have it: it becomes the held frame, to go
// again under a new number after what overtakes it. It reports false when
// f is not the last frame any more (or a frame is held already); f is
// then due to go again as it is.
func (s *sender) unsend(f *outFrame) bool {
	n := len(s.unacked)
	if n == 0 || s.unacked[n-1] != f || f.seq != s.nextSeq-1 || s.held != nil {
		f.pending = true
		return false
	}
	s.unacked = s.unacked[:n-1]
	s.nextSeq--
	s.txCount-- // never reached the peer: it orders nothing
	f.tx, f.resent, f.pending = 0, false, false
	s.held = f
	return true
}

// takeHeld returns the frame cut short, numbered anew (it is not to be
// cut again: it must get through), or nil.
func (s *sender) takeHeld() *outFrame {
	f := s.held
	if f != nil {
		s.held = nil
		s.sequence(f)
	}
	return f
}

// ack processes a cumulative ack (next: the first frame the peer still
// lacks) and a selective-ack bitmap (bit i: frame next+1+i arrived), and
// reports whether it freed or settled any frame. acked is called with
// each frame acknowledged at its first transmission before it is freed.
func (s *sender) ack(next uint16, sack uint64, now time.Time, acked func(*outFrame)) bool {
	if seqLess(s.nextSeq, next) {
		return false // acknowledges frames never sent: ignore
	}
	var maxTx uint64
	progress := false
	for len(s.unacked) > 0 && seqLess(s.unacked[0].seq, next) {
		f := s.unacked[0]
		if !f.resent && !f.sacked {
			// A frame selectively acknowledged gave its sample then:
			// its cumulative ack waited for a lost frame before it.
			s.rttSample(now.Sub(f.sentAt))
			s.frameFate(false)
			if acked != nil {
				acked(f)
			}
		}
		maxTx = max(maxTx, f.tx)
		s.unacked[0] = nil
		s.unacked = s.unacked[1:]
		s.free(f)
		progress = true
	}
	if sack != 0 {
		for _, f := range s.unacked {
			d := f.seq - next - 1
			if d < 64 && sack&(1<<d) != 0 && !f.sacked {
				if !f.resent {
					s.rttSample(now.Sub(f.sentAt))
					s.frameFate(false)
					if acked != nil {
						acked(f)
					}
				}
				f.sacked = true
				f.pending = false
				maxTx = max(maxTx, f.tx)
				progress = true
			}
		}
	}
	// The cumulative ack names the first frame the peer lacks: if we took
	// it for selectively acknowledged, that was wrong (a broken or hostile
	// peer's bitmap); without this it would never go again, and the
	// session would stall behind it.
	if len(s.unacked) > 0 && s.unacked[0].seq == next && s.unacked[0].sacked {
		s.unacked[0].sacked = false
		s.unacked[0].pending = true
	}
	// The line delivers in order: a frame sent before one that arrived,
	// and still missing, was lost. Send it again now.
	for _, f := range s.unacked {
		if !f.sacked && !f.pending && f.tx < maxTx {
			f.pending = true
			s.frameFate(true)
		}
	}
	if progress {
		s.rto = s.computeRTO()
	}
	return progress
}

// heard takes the peer's PIECES report of frame seq: what it holds of
// it, which the fragments sent next skip. A report that covers the last
// piece of a finished round shows every gap before it lost (the line
// keeps order): the frame is due again at once, not at its timeout. It
// reports whether a frame became due.
func (s *sender) heard(seq uint16, total int, spans []span) bool {
	for _, f := range s.unacked {
		if f.seq != seq {
			continue
		}
		if f.sacked || len(f.raw)-dataHeader != total {
			return false
		}
		f.held = append(f.held[:0], spans...)
		if f.pending || f.fragOff != 0 || f.lastEnd == 0 || !covers(spans, f.lastEnd-1) {
			return false
		}
		f.pending = true
		return true
	}
	return false
}

// covers reports whether byte i is in one of spans.
func covers(spans []span, i int) bool {
	for _, s := range spans {
		if i >= s.off && i < s.off+s.n {
			return true
		}
	}
	return false
}

// nextPiece returns the next piece of f to send as a fragment, from off
// on, at most size bytes: it starts at the first byte the peer did not say
// it holds and ends before the next one it holds. ok is false when the
// peer holds every byte from off on.
func (f *outFrame) nextPiece(off, size int) (start, end int, ok bool) {
	total := len(f.raw) - dataHeader
	start = off
	for _, s := range f.held {
		if start >= s.off && start < s.off+s.n {
			start = s.off + s.n
		}
	}
	if start >= total {
		return 0, 0, false
	}
	end = min(total, start+size)
	for _, s := range f.held {
		if s.off > start && s.off < end {
			end = s.off
		}
	}
	return start, end, true
}

// dropAcked forgets unacked frames before next (the peer has them).
func (s *sender) dropAcked(next uint16) {
	for len(s.unacked) > 0 && seqLess(s.unacked[0].seq, next) {
		s.free(s.unacked[0])
		s.unacked[0] = nil
		s.unacked = s.unacked[1:]
	}
}

// resendAll marks every unacknowledged frame due again: the peer had none
// of them (fromScratch, also forgetting what it held out of order), or
// resumes and lacks all it did not hold out of order.
func (s *sender) resendAll(fromScratch bool) {
	for _, f := range s.unacked {
		switch {
		case fromScratch:
			f.pending, f.sacked, f.fragOff, f.lastEnd, f.held = true, false, 0, 0, nil
		case !f.sacked:
			f.pending = true
		}
	}
}

func (s *sender) rttSample(r time.Duration) {
	if r <= 0 {
		r = time.Microsecond
	}
	if s.srtt == 0 {
		s.srtt, s.rttvar = r, r/2
	} else {
		d := s.srtt - r
		if d < 0 {
			d = -d
		}
		s.rttvar = (3*s.rttvar + d) / 4
		s.srtt = (7*s.srtt + r) / 8
	}
}

func (s *sender) computeRTO() time.Duration {
	if s.srtt == 0 {
		return s.initialRTO()
	}
	return max(s.minRTO(), min(s.srtt+4*s.rttvar, 10*time.Second))
}

// initialRTO is the retransmission timer before an RTT sample: 1 s
// (RFC 6298) where the round trip is unknown; on a paced line, where it
// is about a frame's line time each way, three full frames' line time,
// at least 250 ms. On a noisy line the first samples are slow to come
// (Karn: none from frames sent twice), and every second waited there is
// line time lost.
func (s *sender) initialRTO() time.Duration {
	if s.lineRate > 0 {
		return max(250*time.Millisecond, 3*lineTime(s.maxPayload+frameOverhead, s.lineRate))
	}
	return time.Second
}

// maxBackoff bounds the retransmission timer as it backs off. A paced
// line cannot be congested (we never send faster than it carries), so
// backing off only idles it: there the timer stays near the time the
// unacknowledged frames take on the line, which on a noisy line keeps
// rounds of fragments coming. Elsewhere it backs off to 10 s.
func (s *sender) maxBackoff() time.Duration {
	if s.lineRate == 0 {
		return 10 * time.Second
	}
	n := 0
	for _, f := range s.unacked {
		n += f.wireLen
	}
	return min(10*time.Second, max(2*s.computeRTO(), 2*lineTime(n, s.lineRate)+s.minRTO()))
}

func (s *sender) minRTO() time.Duration {
	return 2*lineTime(s.maxPayload+frameOverhead+8, s.lineRate) + 30*time.Millisecond
}

// pendingFrame returns the oldest frame due for retransmission, marking
// frames whose timer ran out.
func (s *sender) pendingFrame(now time.Time) *outFrame {
	if len(s.unacked) == 0 {
		return nil
	}
	if !s.reliable {
		if d, ok := s.rtoDeadline(); ok && !now.Before(d) {
			// Timeout: everything not known to have arrived and sent
			// more than an RTO ago goes again; back the timer off.
			for _, f := range s.unacked {
				if !f.sacked && now.Sub(f.sentAt) >= s.rto {
					f.pending = true
					s.frameFate(true)
				}
			}
			s.rto = min(2*s.rto, s.maxBackoff())
		}
	}
	for _, f := range s.unacked {
		if f.pending {
			return f
		}
	}
	return nil
}

// rtoDeadline is when the oldest unacknowledged frame times out.
func (s *sender) rtoDeadline() (time.Time, bool) {
	if s.reliable {
		return time.Time{}, false
	}
	for _, f := range s.unacked {
		if !f.sacked && !f.pending {
			return f.sentAt.Add(s.rto), true
		}
	}
	return time.Time{}, false
}

// Bounds of the adaptive payload size on lossy lines.
const (
	minSizeCap = 32
	fateWindow = 16 // data frames per estimate of the line's error rate
	fateQuick  = 4  // consecutive losses that make an estimate at once
)

// frameFate records whether a data frame got through at the first try,
// and every fateWindow frames sizes frames to the line's error rate: from
// the share of frames lost it estimates the bit error rate, and takes the
// payload that carries the most data per byte on the line, which balances
// the header's cost against the chance of losing the frame (about
// sqrt(overhead / (8 * BER))).
func (s *sender) frameFate(lost bool) {
	if s.reliable {
		return
	}
	s.fates++
	if lost {
		s.losses++
	}
	// A run of losses with no success is news enough: on a line that
	// turned bad, waiting for a full window costs several timeouts.
	if s.fates < fateWindow && (s.losses < fateQuick || s.losses < s.fates) {
		return
	}
	rate := float64(s.losses) / float64(s.fates)
	s.fates, s.losses = 0, 0
	size := s.maxPayload
	if rate > 0 {
		bits := 8 * float64(s.sizeCap+frameOverhead+s.sizeCap/254+2)
		ber := -math.Log1p(-min(rate, 0.99)) / bits
		size = int(math.Sqrt(float64(frameOverhead+8) / (8 * ber)))
	}
	// Move halfway there: one unlucky window does not swing it.
	next := (s.sizeCap + size) / 2
	if rate >= 0.5 {
		next = size // most frames are lost: waiting halfway only loses more
	}
	next = max(minSizeCap, min(s.maxPayload, next))
	if next != s.sizeCap {
		s.log.Debug("frame size for the line's error rate", "loss", rate, "payload", next)
		s.sizeCap = next
	}
}

// seedSize sizes the first payloads of a transport from the frames the
// handshake lost on it, good and bad of them read so far: on a line noisy
// enough to lose hellos, full-size payloads would be lost too, each
// costing its line time before the first estimate from data frames
// (frameFate) shrinks them. The estimate takes the incoming direction for
// both; frameFate corrects it within fateWindow frames. Only while the
// payload size is still at its largest: an estimate from data frames is
// better.
func (s *sender) seedSize(good, bad int) {
	if s.reliable || s.sizeCap != s.maxPayload || bad < 3 {
		return
	}
	rate := float64(bad) / float64(good+bad)
	if rate < 0.1 {
		return
	}
	ber := -math.Log1p(-min(rate, 0.99)) / (8 * handshakeFrameLen)
	size := int(math.Sqrt(float64(frameOverhead+8) / (8 * ber)))
	s.sizeCap = max(minSizeCap, min(s.maxPayload, size))
	s.log.Debug("frame size for the handshake's losses", "loss", rate, "payload", s.sizeCap)
}

// handshakeFrameLen is about the wire length of the frames of a
// handshake (HELLO, AUTH, PING), in bytes.
const handshakeFrameLen = 64

// sendWindow is how many frames may be unacknowledged.
func (s *sender) sendWindow() int { return min(s.window, s.peerWindow) }

// inflightFrames is how many full-size frames a paced line keeps in
// flight at most: enough to cover a round trip and a repair, few enough
// that a lost frame does not wait behind seconds of line time.
const inflightFrames = 16

// inflightRoom reports whether another data frame may go out: on a paced
// line the unacknowledged payload stays under inflightFrames full frames
// (the window in frames is sized for small frames).
func (s *sender) inflightRoom() bool {
	if s.lineRate == 0 {
		return true
	}
	n := 0
	for _, f := range s.unacked {
		n += len(f.raw) - dataHeader
	}
	return n < inflightFrames*s.maxPayload
}

// mayPull reports whether the window has room for a new data frame.
func (s *sender) mayPull() bool { return len(s.unacked) < s.sendWindow() && s.inflightRoom() }

// receiver is the receive side of the ARQ: what arrived in order, what
// is held out of order, frames put together from fragments, and what the
// last ack told the peer.
type receiver struct {
	rxWindow   int // how many frames we hold out of order
	rxMaxFrame int // our largest payload

	rxNext      uint16
	ooo         map[uint16][]byte
	partials    map[uint16]*partial // frames arriving in fragments
	lastAckSent uint16              // rxNext as of the last ack we sent
}

func newReceiver(cfg Config) receiver {
	return receiver{
		rxWindow:   cfg.Window,
		rxMaxFrame: cfg.MaxPayload,
		ooo:        make(map[uint16][]byte),
		partials:   make(map[uint16]*partial),
	}
}

// reset forgets the session's frames (a session ended).
func (r *receiver) reset() {
	r.rxNext, r.lastAckSent = 0, 0
	clear(r.ooo)
	clear(r.partials)
}

// accept takes data frame seq and appends to deliver the payloads now in
// order (seq's and those held after it); dup reports a frame already
// had. A payload held out of order is copied; one delivered at once is
// not.
func (r *receiver) accept(seq uint16, payload []byte, deliver [][]byte) (_ [][]byte, dup bool) {
	switch {
	case seq == r.rxNext:
		deliver = append(deliver, payload)
		delete(r.partials, seq)
		r.rxNext++
		for {
			p, ok := r.ooo[r.rxNext]
			if !ok {
				break
			}
			delete(r.ooo, r.rxNext)
			deliver = append(deliver, p)
			r.rxNext++
		}
	case r.inWindow(seq):
		if _, had := r.ooo[seq]; had {
			return deliver, true
		}
		r.ooo[seq] = append([]byte(nil), payload...)
	default:
		return deliver, true
	}
	return deliver, false
}

// inWindow reports whether seq is one we take: the next in order, or one
// after it within our window.
func (r *receiver) inWindow(seq uint16) bool {
	return seq == r.rxNext || seqLess(r.rxNext, seq) && int(seq-r.rxNext) < r.rxWindow
}

// partial is a data frame being put together from fragments.
type partial struct {
	buf  []byte
	have []bool
	left int
}

// addFragment stores a piece of frame seq and returns the whole payload
// once every byte of it has arrived; news reports that the piece brought
// bytes not had before (the sender is told which it holds: heldSpans),
// had that the frame arrived already (the sender is told by an ack).
func (r *receiver) addFragment(seq uint16, total, off int, piece []byte) (payload []byte, news, had bool) {
	if total == 0 || total > r.rxMaxFrame || off+len(piece) > total {
		return nil, false, false
	}
	if !r.inWindow(seq) {
		// Before rx_next: delivered already, its ack lost.
		return nil, false, seqLess(seq, r.rxNext)
	}
	if _, done := r.ooo[seq]; done {
		return nil, false, true
	}
	p := r.partials[seq]
	if p == nil || len(p.buf) != total {
		p = &partial{buf: make([]byte, total), have: make([]bool, total), left: total}
		r.partials[seq] = p
	}
	copy(p.buf[off:], piece)
	for i := off; i < off+len(piece); i++ {
		if !p.have[i] {
			p.have[i] = true
			p.left--
			news = true
		}
	}
	if p.left > 0 {
		return nil, news, false
	}
	delete(r.partials, seq)
	return p.buf, news, false
}

// heldSpans returns what is held of frame seq arriving in fragments: its
// payload's length and the runs of bytes held, at most maxPieceSpans of
// them (the first ones); ok is false when no such frame is under way.
func (r *receiver) heldSpans(seq uint16, spans []span) (total int, _ []span, ok bool) {
	p := r.partials[seq]
	if p == nil {
		return 0, spans, false
	}
	for i := 0; i < len(p.have) && len(spans) < maxPieceSpans; {
		if !p.have[i] {
			i++
			continue
		}
		j := i
		for j < len(p.have) && p.have[j] {
			j++
		}
		spans = append(spans, span{i, j - i})
		i = j
	}
	return len(p.buf), spans, len(spans) > 0
}

// sack returns the selective-ack bitmap of frames held out of order.
func (r *receiver) sack() uint64 {
	var bits uint64
	if len(r.ooo) == 0 {
		return 0
	}
	for i := range 64 {
		if _, ok := r.ooo[r.rxNext+1+uint16(i)]; ok {
			bits |= 1 << i
		}
	}
	return bits
}

// ackNow returns the cumulative ack a frame sent now carries, and notes
// that the peer is told it.
func (r *receiver) ackNow() uint16 {
	r.lastAckSent = r.rxNext
	return r.rxNext
}

// unackedIn is how many frames arrived in order since the last ack.
func (r *receiver) unackedIn() int { return int(r.rxNext - r.lastAckSent) }

// resendDue reports whether a frame is due to go again now: one marked
// lost, or one whose retransmission timer ran out (pendingFrame marks it).
func (s *sender) resendDue(now time.Time) bool {
	for _, f := range s.unacked {
		if f.pending {
			return true
		}
	}
	d, ok := s.rtoDeadline()
	return ok && !now.Before(d)
}
