package fec

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// Thresholds of the block search, in flipped bits of the 32-bit marker.
// Shifted by one or two bytes the marker differs from itself in at least
// 9 bits whatever the bytes beside it (TestMarkerShifts), so a marker at
// its expected place is taken with up to 6 bits wrong (at BER 1e-2 more
// than 6 of 32 bits flip once in 3·10⁷ blocks); found a byte or two off
// its place with up to 4; and a marker that starts a block stream, after
// plain bytes or a lost sync, only with up to 3 and a header at most 2
// bits off a codeword and a codeword that decodes.
const (
	trackFlips   = 6
	slipFlips    = 4
	acquireFlips = 3
	acquireHdr   = 2
	trackHdr     = 3
	// slipWindow is how many bytes off its place a marker is looked for:
	// bytes dropped or inserted in the block before.
	slipWindow = 2
)

// ReaderStats counts what a Decoder found.
type ReaderStats struct {
	Blocks    uint64 // blocks decoded
	Corrected uint64 // symbols corrected in them
	// Uncorrectable counts blocks lost: more errors than their code
	// corrects, or a header too damaged to read (a block's place without a
	// marker or a block in it counts as SyncLost).
	Uncorrectable uint64
	Symbols       uint64 // codeword symbols of the blocks decoded and lost
	Resyncs       uint64 // times the decoder found blocks after plain bytes or a lost sync
	SyncLost      uint64 // times it lost the block stream
	Slips         uint64 // markers found a byte or two off their place (bytes dropped or inserted)
	Repaired      uint64 // blocks a dropped or inserted byte had hit, decoded with it put back or taken out
	HeadersFixed  uint64 // headers with flipped bits, corrected
	RawBytes      uint64 // bytes passed on as they came, outside blocks
	Level         int    // the level of the last block decoded; 0 while reading plain bytes
}

// Decoder turns what a Writer wrote, after the line damaged it, back into
// the bytes written. It finds blocks by their marker, with tolerance to
// flipped bits, and expects each next one right after (a byte or two off
// when bytes were dropped or inserted). Bytes outside blocks (a Writer at
// level 0, or garbage) are passed on as they are, so a peer that never
// turns the code on still gets through. A block that cannot be corrected
// is replaced by LossMark, and LossMark separates plain bytes from the
// first block after them. A Decoder is not safe for concurrent use.
type Decoder struct {
	// LossMark is what the decoder passes on in place of a lost block,
	// and between plain bytes and the block after them; for the link's COBS
	// stream a 0x00, so that a frame that a lost block cut is dropped by
	// its CRC rather than joined to the next.
	LossMark []byte
	// OnBlock, when set, is told of every block: its level, the symbols
	// corrected, and whether it was decoded (the chooser's input).
	OnBlock func(level, corrected int, ok bool)

	n, size int // codeword length; block length on the wire
	buf     []byte
	end     int
	locked  bool
	p       int // locked: where the next block should start
	scan    int // unlocked: the next place a marker may start
	out     int // unlocked: bytes before out were passed on (or dropped)
	dropTo  int // unlocked: bytes before dropTo are dropped, not passed on
	level   int // the level of the last block decoded
	pend    int // locked: a block that did not decode, waiting to see whether a slip explains it (-1: none)
	pendLvl int
	passed  bool // bytes were passed on since the last LossMark
	cw      []byte
	stats   ReaderStats
}

// NewDecoder returns a Decoder for blocks of codeword length n.
func NewDecoder(n int) (*Decoder, error) {
	if err := checkBlock(n); err != nil {
		return nil, err
	}
	return &Decoder{LossMark: []byte{0}, n: n, size: n + Overhead, cw: make([]byte, n), pend: -1}, nil
}

// Stats returns the counters.
func (d *Decoder) Stats() ReaderStats {
	s := d.stats
	if d.locked {
		s.Level = d.level
	}
	return s
}

// Buffered returns how many bytes the decoder holds: at most two blocks
// and what the last Feed brought.
func (d *Decoder) Buffered() int { return d.end }

// Need returns how many more bytes complete the block the decoder is in
// the middle of: a reader may sleep while they arrive. It is 0 between
// blocks and -1 while the decoder is not following a block stream (plain
// bytes).
func (d *Decoder) Need() int {
	if !d.locked {
		return -1
	}
	return max(0, d.p+d.size-d.end)
}

// Feed decodes in and appends what it yields to dst. Bytes that may
// belong to a block stay inside until the block is complete.
func (d *Decoder) Feed(dst, in []byte) []byte {
	d.compact()
	d.buf = append(d.buf[:d.end], in...)
	d.end = len(d.buf)
	for {
		var more bool
		if d.locked {
			dst, more = d.stepLocked(dst)
		} else {
			dst, more = d.stepUnlocked(dst)
		}
		if !more {
			return dst
		}
	}
}

// compact drops the bytes no longer needed from the front of the buffer.
func (d *Decoder) compact() {
	keep := min(d.scan, d.out)
	if d.locked {
		keep = d.p - slipWindow
		if d.pend >= 0 {
			keep = min(keep, d.pend)
		}
	}
	if keep <= 0 {
		return
	}
	keep = min(keep, d.end)
	d.end = copy(d.buf, d.buf[keep:d.end])
	d.buf = d.buf[:d.end]
	d.p -= keep
	d.scan = max(d.scan-keep, 0)
	d.out = max(d.out-keep, 0)
	d.dropTo = max(d.dropTo-keep, 0)
	if d.pend >= 0 {
		d.pend -= keep
	}
}

// decode decodes the codeword at buf[c+Overhead:] at level, taking at
// most maxFix corrections; it returns the block's data and whether it was
// good.
func (d *Decoder) decode(c, level, maxFix int) ([]byte, bool) {
	if !ValidLevel(d.n, level) || level == 0 {
		return nil, false
	}
	copy(d.cw, d.buf[c+Overhead:c+d.size])
	d.stats.Symbols += uint64(d.n)
	k, ok := d.decodeCW(level, maxFix)
	if !ok {
		return nil, false
	}
	return d.decoded(level, k), true
}

// decodeCW decodes d.cw in place at level with at most maxFix corrections.
func (d *Decoder) decodeCW(level, maxFix int) (int, bool) {
	addCoset(d.cw, Levels[level])
	k, err := codeFor(level).Decode(d.cw)
	// (A count beyond the capacity is a miscorrection, or no block.)
	return k, err == nil && k <= maxFix && int(d.cw[0]) <= Capacity(d.n, level)
}

// decoded counts a block decoded in d.cw with k corrections and returns
// its data.
func (d *Decoder) decoded(level, k int) []byte {
	d.stats.Blocks++
	d.stats.Corrected += uint64(k)
	if d.OnBlock != nil {
		d.OnBlock(level, k, true)
	}
	return d.cw[1 : 1+int(d.cw[0])]
}

// lost records a block that did not decode.
func (d *Decoder) lost(dst []byte, level int) []byte {
	d.stats.Uncorrectable++
	d.passed = false
	if d.OnBlock != nil {
		d.OnBlock(level, 0, false)
	}
	return append(dst, d.LossMark...)
}

// resolve settles the block that waits in d.pend, now that the next
// marker was found delta bytes off its place: a slip of one byte is
// repaired if it can be (at most n+1 decodings, at the level of its
// header and at the last level before), anything else is a lost block.
//
// A repair tries about n words, so it takes one only with at most
// Corrects−1 corrections: a wrong word lies that close to some codeword
// with probability about C(n,e)·255^e/256^(2t), times n tries: 6·10⁻⁸ at
// t = 3, 7·10⁻¹¹ at t = 8, 2·10⁻⁸ at t = 12 (with all t it would be 0.5 %
// at t = 8). The right word needs one correction for the byte put back
// (none for one taken out) besides the line's errors. t = 2 (one
// correction) leaves nothing to repair with.
func (d *Decoder) resolve(dst []byte, delta int) []byte {
	q, level := d.pend, d.pendLvl
	d.pend = -1
	if delta != 1 && delta != -1 {
		return d.lost(dst, level)
	}
	// The block ran from q to the next marker: n+delta codeword bytes.
	src := d.buf[q+Overhead : q+d.size+delta]
	try := func(l, j int) bool {
		if delta < 0 { // a byte was dropped before src[j]: put a 0 there
			copy(d.cw, src[:j])
			d.cw[j] = 0
			copy(d.cw[j+1:], src[j:])
		} else { // src[j] was inserted: take it out
			copy(d.cw, src[:j])
			copy(d.cw[j:], src[j+1:])
		}
		k, ok := d.decodeCW(l, Corrects(l)-1)
		if ok {
			d.stats.Repaired++
			d.level = l
			dst = append(dst, d.decoded(l, k)...)
		}
		return ok
	}
	for i, l := range []int{level, d.level} {
		if (i == 1 && l == level) || Corrects(l) < 2 {
			continue
		}
		// Every place within Corrects−2 of the true one decodes (the bytes
		// between are shifted by one: wrong, besides the line's errors),
		// so the places are tried in strides of half that first, then
		// the rest.
		stride := max(1, (Corrects(l)-1)/2)
		for j := 0; j < d.n; j += stride {
			if try(l, j) {
				return dst
			}
		}
		for j := 0; j < d.n && stride > 1; j++ {
			if j%stride != 0 && try(l, j) {
				return dst
			}
		}
	}
	return d.lost(dst, level)
}

// stepLocked handles the block expected at d.p; more is false when it
// needs more bytes.
func (d *Decoder) stepLocked(dst []byte) (_ []byte, more bool) {
	p := d.p
	if d.end < p+Overhead {
		return dst, false
	}
	c := p
	good := markerDistance(d.buf[p:]) <= trackFlips
	if !good {
		// Perhaps bytes were dropped or inserted in the block before.
		if d.end < p+slipWindow+Overhead {
			return dst, false
		}
		best := slipFlips + 1
		for delta := -slipWindow; delta <= slipWindow; delta++ {
			if q := p + delta; delta != 0 && q >= 0 {
				if dq := markerDistance(d.buf[q:]); dq < best {
					best, c = dq, q
				}
			}
		}
		good = best <= slipFlips
	}
	// Wait for the whole block (without a marker, for a byte more: it may
	// start a byte late) before anything is counted or decided. (So the
	// last block before the line goes quiet, if its marker is destroyed,
	// is read when the next bytes come.)
	need := c + d.size
	if !good {
		need = p + 1 + d.size
	}
	if d.end < need {
		return dst, false
	}
	if c != p {
		d.stats.Slips++
	}
	if d.pend >= 0 {
		dst = d.resolve(dst, c-p)
	}
	level, flags, flips, hdrOK := parseHeader(d.buf[c+markerLen:], trackHdr)
	switch {
	case !good:
		// No marker: most likely garbage, where a header decodes by
		// chance one time in three. Only the last level is tried, at the
		// block's place and a byte either side (a byte dropped or
		// inserted in the marker), and only a block that needs at most
		// half the corrections is taken (a random word passes that with
		// probability 2·10⁻¹⁰ at t = 3, less above; t = 2 takes none).
		for _, q := range []int{p, p - 1, p + 1} {
			if q < 0 {
				continue
			}
			if data, ok := d.decode(q, d.level, Corrects(d.level)/2); ok {
				d.p = q + d.size
				dst = append(dst, data...)
				if q == p && hdrOK && level == d.level && flags&flagRaw != 0 {
					d.unlock(d.p, d.p) // its header, at least, says so
				}
				return dst, true
			}
		}
		// Neither a marker nor a block (garbage, a noise burst, or bytes
		// dropped or inserted beyond the window): search again from the
		// next byte, dropping (not passing on) what this block's place
		// held.
		d.stats.SyncLost++
		d.passed = false
		d.unlock(p+1, p+d.size)
		return append(dst, d.LossMark...), true
	case !hdrOK:
		level, flags = d.level, 0 // the level seldom changes: try the last one
	case flips > 0:
		d.stats.HeadersFixed++
	}
	if data, ok := d.decode(c, level, Corrects(level)); ok {
		dst = append(dst, data...)
		d.level = level
		d.p = c + d.size
		if flags&flagRaw != 0 {
			d.unlock(d.p, d.p)
		}
		return dst, true
	}
	// The marker was there: the next block follows. Perhaps a byte was
	// dropped or inserted in this one: the next marker will tell.
	d.p = c + d.size
	d.pend, d.pendLvl = c, level
	return dst, true
}

// unlock goes to searching for blocks from scan on, passing bytes from
// dropTo on as they came.
func (d *Decoder) unlock(scan, dropTo int) {
	d.locked = false
	d.scan, d.out, d.dropTo = scan, scan, dropTo
}

// stepUnlocked searches for the start of a block stream, passing the bytes
// before it on.
func (d *Decoder) stepUnlocked(dst []byte) (_ []byte, more bool) {
	for ; d.scan+Overhead <= d.end; d.scan++ {
		c := d.scan
		if c+Overhead < d.out || markerDistance(d.buf[c:]) > acquireFlips {
			continue
		}
		level, flags, _, ok := parseHeader(d.buf[c+markerLen:], acquireHdr)
		if !ok || !ValidLevel(d.n, level) {
			continue
		}
		// What came before goes on; the block waits for its decoding.
		dst = d.pass(dst, c)
		if d.end < c+d.size {
			return dst, false
		}
		data, ok := d.decode(c, level, Corrects(level))
		if !ok {
			continue // not a block after all, or a damaged one
		}
		d.stats.Resyncs++
		if d.passed {
			// Cut off whatever the plain bytes before left unfinished.
			dst = append(dst, d.LossMark...)
			d.passed = false
		}
		dst = append(dst, data...)
		d.level = level
		d.locked, d.p = true, c+d.size
		if flags&flagRaw != 0 {
			d.unlock(d.p, d.p)
		}
		return dst, true
	}
	// The last bytes wait while they may be the start of a marker; a
	// stream of frames, which ends in 0x00 (3 bits from the marker's
	// first byte), is never held.
	hold := d.end
	for j := d.scan; j < d.end; j++ {
		if couldStart(d.buf[j:d.end]) {
			hold = j
			break
		}
	}
	return d.pass(dst, hold), false
}

// couldStart reports whether b, shorter than a marker and header, may be
// their beginning: a prefix of the marker with at most one bit wrong, or
// the marker within acquireFlips.
func couldStart(b []byte) bool {
	if len(b) >= markerLen {
		return markerDistance(b) <= acquireFlips
	}
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], Marker)
	flips := 0
	for i, x := range b {
		flips += bits.OnesCount8(x ^ m[i])
	}
	return flips <= 1
}

// pass passes on the bytes from d.out to to, less those to be dropped.
func (d *Decoder) pass(dst []byte, to int) []byte {
	from := max(d.out, d.dropTo)
	if to > from {
		dst = append(dst, d.buf[from:to]...)
		d.stats.RawBytes += uint64(to - from)
		d.passed = true
	}
	d.out = max(d.out, to)
	return dst
}

// Reader is an io.Reader of the bytes a Decoder recovers from r.
type Reader struct {
	*Decoder
	r   io.Reader
	in  []byte
	out []byte
	off int
	err error
}

// NewReader returns a Reader of blocks of codeword length n from r.
func NewReader(r io.Reader, n int) (*Reader, error) {
	d, err := NewDecoder(n)
	if err != nil {
		return nil, err
	}
	return &Reader{Decoder: d, r: r, in: make([]byte, 4096)}, nil
}

// Read returns decoded bytes; an error of the underlying reader comes
// after everything decoded before it.
func (r *Reader) Read(p []byte) (int, error) {
	for r.off == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		r.out, r.off = r.out[:0], 0
		n, err := r.r.Read(r.in)
		r.out = r.Feed(r.out, r.in[:n])
		r.err = err
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

// String describes the decoder's state, for logs.
func (d *Decoder) String() string {
	if d.locked {
		return fmt.Sprintf("fec: blocks of level %d (t=%d)", d.level, Levels[d.level])
	}
	return "fec: plain bytes"
}
