package link

import (
	"bytes"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// testSender is a sender for a line of the given rate (0: unpaced), not
// reliable unless said, that counts the frames it frees.
func testSender(t *testing.T, reliable bool, rate int) (*sender, *int) {
	t.Helper()
	freed := new(int)
	cfg := Config{MaxPayload: 256, Window: 32, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s := newSender(cfg, Properties{Reliable: reliable, LineRate: rate}, func(*outFrame) { *freed++ })
	s.peerWindow = 32
	return &s, freed
}

// sendN numbers and transmits n data frames at now.
func sendN(s *sender, n int, now time.Time) []*outFrame {
	var fs []*outFrame
	for range n {
		f := getFrame(16)
		f.raw = f.raw[:dataHeader+16]
		f.raw[0] = frameData
		s.sequence(f)
		s.transmitted(f, now)
		fs = append(fs, f)
	}
	return fs
}

func TestSenderCumulativeAck(t *testing.T) {
	s, freed := testSender(t, false, 0)
	t0 := time.Unix(1000, 0)
	fs := sendN(s, 3, t0)
	if fs[2].seq != 2 || s.nextSeq != 3 {
		t.Fatalf("seqs %d, next %d; want 2, 3", fs[2].seq, s.nextSeq)
	}
	var sampled []uint16
	if !s.ack(2, 0, t0.Add(50*time.Millisecond), func(f *outFrame) { sampled = append(sampled, f.seq) }) {
		t.Fatal("an ack of two frames made no progress")
	}
	if len(s.unacked) != 1 || s.unacked[0].seq != 2 || *freed != 2 {
		t.Fatalf("%d unacked (first %d), %d freed; want frame 2 left, 2 freed", len(s.unacked), s.unacked[0].seq, *freed)
	}
	if len(sampled) != 2 || s.srtt != 50*time.Millisecond {
		t.Fatalf("samples %v, srtt %v; want 2 samples of 50ms", sampled, s.srtt)
	}
	if s.rto != s.computeRTO() || s.rto < s.minRTO() {
		t.Fatalf("rto %v; want computeRTO %v, at least minRTO %v", s.rto, s.computeRTO(), s.minRTO())
	}
	// An ack of frames never sent is ignored.
	if s.ack(9, 0, t0, nil) || len(s.unacked) != 1 {
		t.Fatal("an ack beyond what was sent was taken")
	}
	// An old ack changes nothing either.
	if s.ack(1, 0, t0, nil) || len(s.unacked) != 1 {
		t.Fatal("an old ack made progress")
	}
}

func TestSenderSackMarksEarlierFrameLost(t *testing.T) {
	s, _ := testSender(t, false, 0)
	t0 := time.Unix(1000, 0)
	fs := sendN(s, 3, t0)
	// Frame 1 arrived out of order (bit 0 = next+1): frame 0, sent
	// before it on an in-order line, was lost.
	s.ack(0, 1, t0.Add(time.Millisecond), nil)
	if !fs[1].sacked || fs[1].pending {
		t.Fatalf("frame 1: sacked %v pending %v; want sacked, not pending", fs[1].sacked, fs[1].pending)
	}
	if !fs[0].pending || fs[2].pending {
		t.Fatalf("pending: frame 0 %v, frame 2 %v; want only frame 0", fs[0].pending, fs[2].pending)
	}
	if f := s.pendingFrame(t0.Add(time.Millisecond)); f != fs[0] {
		t.Fatalf("pendingFrame = %v; want frame 0", f)
	}
}

// A bitmap that claimed the frame the cumulative ack then names as the
// first one missing was wrong: the frame goes again (else it never would,
// and the session would stall behind it).
func TestSenderWrongSackUndone(t *testing.T) {
	s, _ := testSender(t, false, 0)
	t0 := time.Unix(1000, 0)
	fs := sendN(s, 4, t0)
	s.ack(0, 0b11, t0.Add(time.Millisecond), nil) // frames 1 and 2 held
	if !fs[1].sacked || !fs[2].sacked {
		t.Fatal("frames 1 and 2 not marked held")
	}
	// Frame 0 arrived, yet the peer lacks frame 1: it did not hold it.
	s.ack(1, 0, t0.Add(2*time.Millisecond), nil)
	if fs[1].sacked || !fs[1].pending {
		t.Fatalf("frame 1: sacked %v pending %v; want due again", fs[1].sacked, fs[1].pending)
	}
	if !fs[2].sacked || fs[2].pending {
		t.Fatalf("frame 2: sacked %v pending %v; want still held", fs[2].sacked, fs[2].pending)
	}
	if f := s.pendingFrame(t0.Add(2 * time.Millisecond)); f != fs[1] {
		t.Fatalf("pendingFrame = %v; want frame 1", f)
	}
}

func TestSenderTimeoutBacksOff(t *testing.T) {
	s, _ := testSender(t, false, 0)
	t0 := time.Unix(1000, 0)
	fs := sendN(s, 2, t0)
	rto := s.rto
	d, ok := s.rtoDeadline()
	if !ok || !d.Equal(t0.Add(rto)) {
		t.Fatalf("rtoDeadline %v %v; want %v", d, ok, t0.Add(rto))
	}
	if f := s.pendingFrame(d.Add(-time.Millisecond)); f != nil {
		t.Fatal("a frame was due before its timer ran out")
	}
	if f := s.pendingFrame(d); f != fs[0] || !fs[1].pending {
		t.Fatalf("at the deadline: %v due, frame 1 pending %v; want both due, frame 0 first", f, fs[1].pending)
	}
	if s.rto != min(2*rto, s.maxBackoff()) || s.rto <= rto {
		t.Fatalf("rto %v after a timeout; want it backed off from %v", s.rto, rto)
	}
	if _, ok := s.rtoDeadline(); ok {
		t.Fatal("a deadline while every frame is due anyway")
	}
}

func TestSenderReliableNeverTimesOut(t *testing.T) {
	s, _ := testSender(t, true, 0)
	t0 := time.Unix(1000, 0)
	sendN(s, 1, t0)
	if _, ok := s.rtoDeadline(); ok {
		t.Fatal("a retransmission timer on a reliable transport")
	}
	if f := s.pendingFrame(t0.Add(time.Hour)); f != nil {
		t.Fatal("a frame resent on a reliable transport")
	}
}

func TestSenderUnsendAndHeld(t *testing.T) {
	s, _ := testSender(t, false, 0)
	t0 := time.Unix(1000, 0)
	fs := sendN(s, 2, t0)
	if s.unsend(fs[0]) || !fs[0].pending {
		t.Fatal("unsend took back a frame that is not the last one")
	}
	if !s.unsend(fs[1]) || s.nextSeq != 1 || len(s.unacked) != 1 || s.txCount != 1 {
		t.Fatalf("unsend of the last frame: next %d, %d unacked, tx %d; want 1, 1, 1", s.nextSeq, len(s.unacked), s.txCount)
	}
	urgent := sendN(s, 1, t0)[0] // takes the cut frame's number
	if urgent.seq != 1 {
		t.Fatalf("the overtaking frame got seq %d; want 1", urgent.seq)
	}
	f := s.takeHeld()
	if f != fs[1] || f.seq != 2 || s.held != nil || s.takeHeld() != nil {
		t.Fatalf("takeHeld = seq %d; want the cut frame, renumbered 2, once", f.seq)
	}
}

func TestSenderResendAll(t *testing.T) {
	s, _ := testSender(t, false, 0)
	fs := sendN(s, 2, time.Unix(1000, 0))
	fs[1].sacked, fs[1].fragOff = true, 7
	s.resendAll(false)
	if !fs[0].pending || fs[1].pending {
		t.Fatal("a resume resent a frame the peer holds, or skipped one it lacks")
	}
	s.resendAll(true)
	if !fs[1].pending || fs[1].sacked || fs[1].fragOff != 0 {
		t.Fatal("an adoption kept what the peer was said to hold")
	}
}

func TestSenderFrameSizeFollowsLosses(t *testing.T) {
	s, _ := testSender(t, false, 9600)
	for range fateQuick {
		s.frameFate(true)
	}
	if s.sizeCap >= s.maxPayload || s.sizeCap < minSizeCap {
		t.Fatalf("sizeCap %d after %d straight losses; want below %d, at least %d", s.sizeCap, fateQuick, s.maxPayload, minSizeCap)
	}
	small := s.sizeCap
	for range 4 * fateWindow {
		s.frameFate(false)
	}
	if s.sizeCap <= small {
		t.Fatalf("sizeCap %d after a clean run; want above %d", s.sizeCap, small)
	}
	r, _ := testSender(t, true, 0)
	for range 2 * fateWindow {
		r.frameFate(true)
	}
	if r.sizeCap != r.maxPayload {
		t.Fatal("a reliable transport shrank its frames")
	}
}

func TestSenderWindow(t *testing.T) {
	s, _ := testSender(t, false, 0)
	s.peerWindow = 2
	sendN(s, 1, time.Unix(1000, 0))
	if !s.mayPull() {
		t.Fatal("no room with one frame of two out")
	}
	sendN(s, 1, time.Unix(1000, 0))
	if s.mayPull() {
		t.Fatal("room beyond the peer's window")
	}
}

func testReceiver(window int) *receiver {
	r := newReceiver(Config{MaxPayload: 64, Window: window})
	return &r
}

func TestReceiverReorders(t *testing.T) {
	r := testReceiver(8)
	got, dup := r.accept(1, []byte("b"), nil)
	if dup || len(got) != 0 {
		t.Fatalf("frame 1 first: %q dup %v; want it held", got, dup)
	}
	if r.sack() != 1 {
		t.Fatalf("sack %b; want bit 0 (frame 1)", r.sack())
	}
	if _, dup := r.accept(1, []byte("b"), nil); !dup {
		t.Fatal("frame 1 twice was not a duplicate")
	}
	in := []byte("a")
	got, dup = r.accept(0, in, nil)
	if dup || len(got) != 2 || string(got[0]) != "a" || string(got[1]) != "b" || r.rxNext != 2 {
		t.Fatalf("frame 0: %q dup %v next %d; want a, b and next 2", got, dup, r.rxNext)
	}
	if &got[0][0] != &in[0] {
		t.Fatal("a payload delivered at once was copied")
	}
	if r.sack() != 0 || len(r.ooo) != 0 {
		t.Fatal("frames still held after delivery")
	}
	if _, dup := r.accept(0, []byte("a"), nil); !dup {
		t.Fatal("an old frame was not a duplicate")
	}
	if _, dup := r.accept(2+8, []byte("x"), nil); !dup || len(r.ooo) != 0 {
		t.Fatal("a frame beyond the window was held")
	}
	if n := r.ackNow(); n != 2 || r.unackedIn() != 0 {
		t.Fatalf("ackNow %d, unackedIn %d; want 2, 0", n, r.unackedIn())
	}
}

func TestReceiverHeldPayloadIsCopied(t *testing.T) {
	r := testReceiver(8)
	buf := []byte("held")
	r.accept(1, buf, nil)
	copy(buf, "XXXX") // the reader reuses its buffer
	got, _ := r.accept(0, []byte("a"), nil)
	if string(got[1]) != "held" {
		t.Fatalf("held payload %q; want held", got[1])
	}
}

func TestReceiverFragments(t *testing.T) {
	r := testReceiver(8)
	if p, news, _ := r.addFragment(0, 6, 0, []byte("abc")); p != nil || !news {
		t.Fatal("a payload before all its pieces, or the first piece not news")
	}
	if total, spans, ok := r.heldSpans(0, nil); !ok || total != 6 || !slices.Equal(spans, []span{{0, 3}}) {
		t.Fatalf("heldSpans = %d %v %v; want 6 [{0 3}]", total, spans, ok)
	}
	if p, news, _ := r.addFragment(0, 6, 2, []byte("c")); p != nil || news {
		t.Fatal("a piece held already completed the payload or was news")
	}
	if p, news, _ := r.addFragment(0, 6, 3, []byte("def")); !bytes.Equal(p, []byte("abcdef")) || !news {
		t.Fatalf("assembled %q; want abcdef", p)
	}
	if _, _, ok := r.heldSpans(0, nil); ok {
		t.Fatal("spans of a frame assembled and gone")
	}
	for _, c := range []struct {
		seq        uint16
		total, off int
		piece      string
	}{
		{0, 0, 0, ""},     // empty payload
		{0, 65, 0, "x"},   // longer than our largest payload
		{0, 4, 3, "xy"},   // past the payload's end
		{9, 4, 0, "abcd"}, // outside the window
	} {
		if p, news, _ := r.addFragment(c.seq, c.total, c.off, []byte(c.piece)); p != nil || news {
			t.Errorf("addFragment(%d, %d, %d, %q) = %q; want it refused", c.seq, c.total, c.off, c.piece, p)
		}
	}
	r.accept(1, []byte("whole"), nil)
	if p, _, had := r.addFragment(1, 1, 0, []byte("x")); p != nil || !had {
		t.Fatal("a fragment of a frame already held was taken, or not reported had")
	}
	r.accept(0, []byte("abcdef"), nil)
	if _, _, had := r.addFragment(0, 6, 0, []byte("abc")); !had {
		t.Fatal("a fragment of a frame delivered already was not reported had (its ack is owed)")
	}
	r.reset()
	if r.rxNext != 0 || len(r.ooo) != 0 || len(r.partials) != 0 {
		t.Fatal("reset kept state")
	}
}

func TestPiecesFrame(t *testing.T) {
	spans := []span{{0, 30}, {50, 10}}
	b := piecesFrame(nil, 7, 100, spans)
	seq, total, got, err := parsePieces(b)
	if err != nil || seq != 7 || total != 100 || !slices.Equal(got, spans) {
		t.Fatalf("parsePieces = %d %d %v %v; want 7 100 %v", seq, total, got, err, spans)
	}
	for name, bad := range map[string][]byte{
		"short":        b[:5],
		"no spans":     piecesFrame(nil, 7, 100, nil),
		"empty span":   piecesFrame(nil, 7, 100, []span{{3, 0}}),
		"past total":   piecesFrame(nil, 7, 100, []span{{90, 11}}),
		"overlapping":  piecesFrame(nil, 7, 100, []span{{0, 20}, {10, 5}}),
		"out of order": piecesFrame(nil, 7, 100, []span{{50, 5}, {0, 5}}),
		"truncated":    b[:len(b)-1],
		"too many":     piecesFrame(nil, 7, 100, []span{{0, 1}, {2, 1}, {4, 1}, {6, 1}, {8, 1}, {10, 1}, {12, 1}, {14, 1}, {16, 1}}),
	} {
		if _, _, _, err := parsePieces(bad); err == nil {
			t.Errorf("%s: parsePieces took %x", name, bad)
		}
	}
}

// A frame resent in fragments skips what the peer said it holds, and a
// report that covers a finished round's last piece makes the frame due at
// once.
func TestSenderPieces(t *testing.T) {
	s, _ := testSender(t, false, 11520)
	t0 := time.Unix(1000, 0)
	f := getFrame(100)
	f.raw = f.raw[:dataHeader+100]
	f.raw[0] = frameData
	s.sequence(f)
	s.transmitted(f, t0)
	var pieces []span
	for off := 0; ; {
		start, end, ok := f.nextPiece(off, 16)
		if !ok {
			break
		}
		pieces = append(pieces, span{start, end - start})
		off = end
	}
	if len(pieces) != 7 || pieces[6] != (span{96, 4}) {
		t.Fatalf("pieces of a frame nobody holds: %v", pieces)
	}
	if s.heard(f.seq, 99, []span{{0, 30}}) || f.held != nil {
		t.Fatal("a report for another length was taken")
	}
	s.heard(f.seq, 100, []span{{0, 30}, {50, 10}, {95, 5}})
	pieces = pieces[:0]
	for off := 0; ; {
		start, end, ok := f.nextPiece(off, 16)
		if !ok {
			break
		}
		pieces = append(pieces, span{start, end - start})
		off = end
	}
	if want := []span{{30, 16}, {46, 4}, {60, 16}, {76, 16}, {92, 3}}; !slices.Equal(pieces, want) {
		t.Fatalf("pieces after a report: %v; want %v", pieces, want)
	}
	// The round ended at 95; a report covering byte 94 shows the rest lost.
	f.lastEnd = 95
	if s.heard(f.seq, 100, []span{{0, 30}, {50, 10}, {80, 20}}) != true || !f.pending {
		t.Fatal("a report covering the round's last piece did not make the frame due")
	}
	f.pending = false
	if s.heard(f.seq, 100, []span{{0, 30}}) || f.pending {
		t.Fatal("a report short of the round's last piece made the frame due")
	}
	if _, _, ok := (&outFrame{raw: f.raw, held: []span{{0, 100}}}).nextPiece(0, 16); ok {
		t.Fatal("a piece of a frame the peer holds whole")
	}
}

// Selective acks give RTT samples and count as frames through, once: a
// frame's cumulative ack, which waited for a lost frame before it, does not
// sample or count again.
func TestSenderSackSamplesOnce(t *testing.T) {
	s, _ := testSender(t, false, 0)
	t0 := time.Unix(1000, 0)
	sendN(s, 2, t0)
	var sampled []uint16
	s.ack(0, 1<<0, t0.Add(40*time.Millisecond), func(f *outFrame) { sampled = append(sampled, f.seq) })
	if s.srtt != 40*time.Millisecond || !slices.Equal(sampled, []uint16{1}) {
		t.Fatalf("srtt %v, sampled %v after a sack of frame 1; want 40ms, [1]", s.srtt, sampled)
	}
	fates := s.fates
	s.ack(2, 0, t0.Add(900*time.Millisecond), func(f *outFrame) { sampled = append(sampled, f.seq) })
	if !slices.Equal(sampled, []uint16{1, 0}) || s.fates != fates+1 {
		t.Fatalf("sampled %v, fates +%d after the cumulative ack; want [1 0], +1 (frame 0 only)", sampled, s.fates-fates)
	}
}

// The first payloads of a transport are sized from the frames its
// handshake lost, and only on a lossy line that lost enough of them.
func TestSenderSeedSize(t *testing.T) {
	for _, c := range []struct {
		reliable  bool
		good, bad int
		small     bool
	}{
		{false, 2, 6, true},
		{false, 40, 2, false}, // too few lost to tell
		{false, 60, 4, false}, // under a tenth
		{true, 2, 6, false},
	} {
		s, _ := testSender(t, c.reliable, 11520)
		s.seedSize(c.good, c.bad)
		if small := s.sizeCap < s.maxPayload; small != c.small || s.sizeCap < minSizeCap {
			t.Errorf("%+v: sizeCap %d of %d", c, s.sizeCap, s.maxPayload)
		}
	}
}
