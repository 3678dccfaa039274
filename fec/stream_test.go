package fec

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// encodeAll writes data through a Writer at level in random chunks with
// random flushes and returns the wire bytes.
func encodeAll(t testing.TB, rng *rand.Rand, n, level int, data []byte) []byte {
	var wire bytes.Buffer
	w, err := NewWriter(&wire, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetLevel(level); err != nil {
		t.Fatal(err)
	}
	for len(data) > 0 {
		k := min(len(data), 1+rng.IntN(700))
		if _, err := w.Write(data[:k]); err != nil {
			t.Fatal(err)
		}
		data = data[k:]
		if rng.IntN(4) == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return wire.Bytes()
}

// decodeAll feeds wire to a Decoder in random chunks.
func decodeAll(t testing.TB, rng *rand.Rand, d *Decoder, wire []byte) []byte {
	var out []byte
	for len(wire) > 0 {
		k := min(len(wire), 1+rng.IntN(600))
		out = d.Feed(out, wire[:k])
		wire = wire[k:]
		if d.Buffered() > 2*(d.size+slipWindow)+600 {
			t.Fatalf("decoder holds %d bytes", d.Buffered())
		}
	}
	return out
}

func newDecoder(t testing.TB, n int) *Decoder {
	d, err := NewDecoder(n)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRoundTripEveryLevel(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, n := range []int{255, 128, MinBlock} {
		for level := 0; level <= MaxLevel; level++ {
			if !ValidLevel(n, level) {
				continue
			}
			data := randBlock(rng, 1+rng.IntN(20000))
			wire := encodeAll(t, rng, n, level, data)
			d := newDecoder(t, n)
			got := decodeAll(t, rng, d, wire)
			if !bytes.Equal(got, data) {
				t.Fatalf("n=%d level %d: %d bytes in, %d out", n, level, len(data), len(got))
			}
			s := d.Stats()
			if s.Uncorrectable+s.SyncLost+s.Corrected != 0 {
				t.Fatalf("n=%d level %d: %+v on a clean line", n, level, s)
			}
			if level > 0 && (s.RawBytes != 0 || s.Level != level) {
				t.Fatalf("n=%d level %d: %+v", n, level, s)
			}
		}
	}
}

func TestLevelChanges(t *testing.T) {
	// Any sequence of levels, off included, on one stream: the bytes come
	// out as they went in (LossMark empty: a mark separates plain bytes
	// from the block after them).
	rng := rand.New(rand.NewPCG(23, 24))
	var wire bytes.Buffer
	w, _ := NewWriter(&wire, 255)
	var data []byte
	for i := 0; i < 300; i++ {
		if rng.IntN(3) == 0 {
			if err := w.SetLevel(rng.IntN(MaxLevel + 1)); err != nil {
				t.Fatal(err)
			}
		}
		p := randBlock(rng, rng.IntN(400))
		data = append(data, p...)
		w.Write(p)
		if rng.IntN(3) == 0 {
			w.Flush()
		}
	}
	w.SetLevel(0)
	d := newDecoder(t, 255)
	d.LossMark = nil
	if got := decodeAll(t, rng, d, wire.Bytes()); !bytes.Equal(got, data) {
		t.Fatalf("%d bytes in, %d out", len(data), len(got))
	}
	if s := d.Stats(); s.Uncorrectable+s.SyncLost != 0 {
		t.Fatalf("%+v", s)
	}
}

// blockSpans returns where each block's codeword lies in wire.
func blockSpans(wire []byte, n int) [][2]int {
	var spans [][2]int
	for i := 0; i+n+Overhead <= len(wire); i += n + Overhead {
		if binary.BigEndian.Uint32(wire[i:]) != Marker {
			panic("not a block stream")
		}
		spans = append(spans, [2]int{i + Overhead, i + Overhead + n})
	}
	return spans
}

func TestErrorsUpToTEveryBlock(t *testing.T) {
	// t random byte errors in every codeword, and a few bits flipped in
	// every marker and header: everything comes back.
	rng := rand.New(rand.NewPCG(25, 26))
	for level := 1; level <= MaxLevel; level++ {
		tt := Corrects(level)
		data := randBlock(rng, 30000)
		wire := encodeAll(t, rng, 255, level, data)
		for i, sp := range blockSpans(wire, 255) {
			damage(rng, wire[sp[0]:sp[1]], rng.IntN(tt+1))
			m := sp[0] - Overhead
			for f := 0; f < i%3; f++ { // up to 2 flips in marker+header
				b := rng.IntN(8 * Overhead)
				wire[m+b/8] ^= 1 << (b % 8)
			}
		}
		d := newDecoder(t, 255)
		if got := decodeAll(t, rng, d, wire); !bytes.Equal(got, data) {
			t.Fatalf("level %d: %d bytes in, %d out, %+v", level, len(data), len(got), d.Stats())
		}
	}
}

func TestMarkerShifts(t *testing.T) {
	// The marker shifted by one or two bytes, whatever bytes fill in,
	// differs from itself in more than trackFlips bits; so a block a slip
	// away is never taken for one in its place.
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], Marker)
	for shift := 1; shift <= slipWindow; shift++ {
		// Best case for a false match: the filler matches perfectly.
		dl := 0 // marker moved left: m[shift:] against m[:4-shift]
		for i := 0; i+shift < 4; i++ {
			dl += onesCount8(m[i] ^ m[i+shift])
		}
		if dl <= trackFlips {
			t.Errorf("shift %d: %d bits", shift, dl)
		}
	}
}

func onesCount8(b byte) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

func TestUncorrectableReported(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	for level := 4; level <= MaxLevel; level++ { // t ≥ 6: an overloaded block is miscorrected with p ≈ 1.2e-3 or less
		tt := Levels[level]
		c := Capacity(255, level)
		data := randBlock(rng, 20*c)
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, 255)
		w.SetLevel(level)
		w.Write(data)
		wire := buf.Bytes()
		spans := blockSpans(wire, 255)
		hit := 1 + rng.IntN(len(spans)-2)
		damage(rng, wire[spans[hit][0]:spans[hit][1]], tt+1+rng.IntN(10))
		d := newDecoder(t, 255)
		d.LossMark = []byte("LOST")
		got := decodeAll(t, rng, d, wire)
		want := append(append(bytes.Clone(data[:hit*c]), "LOST"...), data[(hit+1)*c:]...)
		if !bytes.Equal(got, want) {
			t.Fatalf("level %d: block %d damaged: output differs", level, hit)
		}
		if s := d.Stats(); s.Uncorrectable != 1 || s.SyncLost != 0 || s.Blocks != uint64(len(spans)-1) {
			t.Fatalf("level %d: %+v", level, s)
		}
	}
}

// A byte dropped or inserted anywhere costs at most the block it hit, and
// the decoder is in step at the next marker; one byte dropped or inserted
// is repaired; two dropped lose the block.
func TestDropInsertResync(t *testing.T) {
	rng := rand.New(rand.NewPCG(29, 30))
	const level = 5
	c := Capacity(255, level)
	data := randBlock(rng, 12*c)
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, 255)
	w.SetLevel(level)
	w.Write(data)
	clean := buf.Bytes()
	size := 255 + Overhead
	whole, single := 0, 0
	defer func() {
		// One byte dropped or inserted: the block is repaired (put back or
		// taken out at the place that decodes), whatever the place.
		if whole != single {
			t.Errorf("%d of %d single slips repaired", whole, single)
		}
	}()
	for trial := 0; trial < 3*size+300; trial++ {
		wire := bytes.Clone(clean)
		at := 3*size + trial/3 // every position of block 3, each way
		if trial >= 3*size {
			at = size + rng.IntN(len(wire)-3*size) // then anywhere but the first and last blocks
		}
		hit := at / size
		var kind string
		switch trial % 3 {
		case 0:
			single++
			kind = "drop"
			wire = append(wire[:at], wire[at+1:]...)
		case 1:
			single++
			kind = "insert"
			wire = append(wire[:at], append([]byte{byte(rng.Uint32())}, wire[at:]...)...)
		case 2:
			kind = "drop 2"
			wire = append(wire[:at], wire[at+2:]...)
		}
		d := newDecoder(t, 255)
		d.LossMark = []byte("LOST")
		got := decodeAll(t, rng, d, wire)
		want := append(append(bytes.Clone(data[:hit*c]), "LOST"...), data[(hit+1)*c:]...)
		if bytes.Equal(got, data) {
			// Repaired (one byte dropped or inserted), or the slip hit the
			// last bytes of the parity and the code corrected them.
			if kind != "drop 2" {
				whole++
			}
			continue
		}
		// After a lost sync a byte or two of the misaligned stream may go
		// on as plain bytes before the mark that starts the next block.
		lost := "LOST"
		if !bytes.HasPrefix(got, append(bytes.Clone(data[:hit*c]), lost...)) ||
			!bytes.HasSuffix(got, append([]byte(lost), data[(hit+1)*c:]...)) || len(got) > len(want)+slipWindow+len(lost) {
			t.Fatalf("%s at %d (block %d, byte %d of it): output differs; %+v", kind, at, hit, at%size, d.Stats())
		}
	}
}

// Garbage inserted (up to a few blocks of it) loses the blocks it hit;
// the garbage itself is passed on as plain bytes, cut off by LossMark
// from the good blocks after it.
func TestGarbageResync(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	const level = 5
	c := Capacity(255, level)
	data := randBlock(rng, 12*c)
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, 255)
	w.SetLevel(level)
	w.Write(data)
	clean := buf.Bytes()
	size := 255 + Overhead
	for trial := 0; trial < 200; trial++ {
		at := size + rng.IntN(len(clean)-4*size)
		g := randBlock(rng, 1+rng.IntN(3*size))
		wire := append(append(bytes.Clone(clean[:at]), g...), clean[at:]...)
		d := newDecoder(t, 255)
		d.LossMark = []byte("LOST")
		got := decodeAll(t, rng, d, wire)
		hit := at / size
		// Everything before the hit block, and from the block after it.
		after := func(j int) bool { return bytes.HasSuffix(got, append([]byte("LOST"), data[j*c:]...)) }
		if !bytes.HasPrefix(got, data[:hit*c]) || !(after(hit) || after(hit+1)) {
			t.Fatalf("garbage of %d at %d: blocks beyond the hit one lost; %+v", len(g), at, d.Stats())
		}
		if s := d.Stats(); s.Uncorrectable+s.SyncLost == 0 || s.Blocks < 11 {
			t.Fatalf("garbage of %d at %d: %+v", len(g), at, s)
		}
	}
}

// cobsFrame is the link's framing, for tests: COBS(body‖CRC32C) 0x00.
func cobsFrame(dst, body []byte) []byte {
	src := binary.BigEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
	for {
		run := src[:min(len(src), 254)]
		z := bytes.IndexByte(run, 0)
		if z >= 0 {
			dst = append(append(dst, byte(z+1)), src[:z]...)
			src = src[z+1:]
			continue
		}
		dst = append(append(dst, byte(len(run)+1)), run...)
		src = src[len(run):]
		if len(run) < 254 || len(src) == 0 {
			return append(dst, 0)
		}
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// parseFrames splits a decoded stream as the link does and returns the
// bodies whose CRC checks, and how many runs failed.
func parseFrames(stream []byte) (good [][]byte, bad int) {
	for _, enc := range bytes.Split(stream, []byte{0}) {
		if len(enc) == 0 {
			continue
		}
		var dec []byte
		ok := true
		for src := enc; len(src) > 0; {
			code := int(src[0])
			if code > len(src) {
				ok = false
				break
			}
			dec = append(dec, src[1:code]...)
			src = src[code:]
			if code < 0xFF && len(src) > 0 {
				dec = append(dec, 0)
			}
		}
		if !ok || len(dec) < 5 || crc32.Checksum(dec[:len(dec)-4], castagnoli) != binary.BigEndian.Uint32(dec[len(dec)-4:]) {
			bad++
			continue
		}
		good = append(good, dec[:len(dec)-4])
	}
	return good, bad
}

// isSubsequence reports whether got is sent with some elements left out.
func isSubsequence(got, sent [][]byte) bool {
	i := 0
	for _, g := range got {
		for i < len(sent) && !bytes.Equal(sent[i], g) {
			i++
		}
		if i == len(sent) {
			return false
		}
		i++
	}
	return true
}

// A slip in a block that also has line errors is repaired while the
// errors leave room (t−2 corrections, the byte put back counting one).
func TestSlipRepairWithErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for level := 2; level <= MaxLevel; level++ {
		tt := Levels[level]
		c := Capacity(255, level)
		data := randBlock(rng, 6*c)
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, 255)
		w.SetLevel(level)
		w.Write(data)
		size := 255 + Overhead
		for trial := 0; trial < 20; trial++ {
			wire := bytes.Clone(buf.Bytes())
			cw := wire[2*size+Overhead : 3*size]
			damage(rng, cw, tt-3)
			at := 2*size + Overhead + rng.IntN(255)
			if trial%2 == 0 {
				wire = append(wire[:at], wire[at+1:]...)
			} else {
				wire = append(wire[:at], append([]byte{byte(rng.Uint32())}, wire[at:]...)...)
			}
			d := newDecoder(t, 255)
			if got := decodeAll(t, rng, d, wire); !bytes.Equal(got, data) {
				t.Fatalf("t=%d: a slip and %d errors in a block: not repaired, %+v", tt, tt-3, d.Stats())
			}
			if s := d.Stats(); s.Repaired > 1 || s.Uncorrectable+s.SyncLost != 0 {
				t.Fatalf("t=%d: %+v", tt, s)
			}
		}
	}
}

// The Reader over an io.Reader that returns one byte at a time, and the
// error after the data.
func TestReaderOneByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	data := randBlock(rng, 5000)
	wire := encodeAll(t, rng, 255, 6, data)
	r, err := NewReader(iotest.OneByteReader(bytes.NewReader(wire)), 255)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d of %d bytes, err %v", len(got), len(data), err)
	}
	if s := r.Stats(); s.Blocks == 0 || s.Level != 6 {
		t.Fatalf("%+v", s)
	}
	// Plain bytes (level 0) come through a byte at a time too, none held
	// back at the end, as a stream of COBS frames ends in 0x00.
	frames := cobsFrame(cobsFrame(nil, []byte("one")), []byte("two"))
	r, _ = NewReader(iotest.OneByteReader(bytes.NewReader(frames)), 255)
	if got, _ := io.ReadAll(r); !bytes.Equal(got, frames) {
		t.Fatalf("plain bytes: %q", got)
	}
	d := newDecoder(t, 255)
	var out []byte
	for _, b := range frames {
		out = d.Feed(out, []byte{b})
	}
	if !bytes.Equal(out, frames) {
		t.Fatalf("plain bytes held back: %d of %d out", len(out), len(frames))
	}
}

func TestBadArguments(t *testing.T) {
	for _, n := range []int{0, MinBlock - 1, 256} {
		if _, err := NewWriter(io.Discard, n); err == nil {
			t.Errorf("NewWriter(%d) accepted", n)
		}
		if _, err := NewDecoder(n); err == nil {
			t.Errorf("NewDecoder(%d) accepted", n)
		}
	}
	w, _ := NewWriter(io.Discard, 64)
	for _, l := range []int{-1, MaxLevel + 1, 8} { // t=20: 80 parity bytes of 64
		if err := w.SetLevel(l); err == nil {
			t.Errorf("SetLevel(%d) accepted for 64-byte blocks", l)
		}
	}
}

// The block that turns the code off, its marker destroyed: the flywheel
// reads it, and its header still says plain bytes follow.
func TestOffBlockWithoutMarker(t *testing.T) {
	rng := rand.New(rand.NewPCG(37, 38))
	var wire bytes.Buffer
	w, _ := NewWriter(&wire, 255)
	w.SetLevel(5)
	a, b := randBlock(rng, 3*Capacity(255, 5)+100), randBlock(rng, 700)
	w.Write(a)
	w.SetLevel(0) // the partial block goes out flagged
	off := wire.Len() - (255 + Overhead)
	w.Write(b)
	line := wire.Bytes()
	line[off] ^= 0xFF // 8 of the marker's bits
	d := newDecoder(t, 255)
	d.LossMark = nil
	if got := d.Feed(nil, line); !bytes.Equal(got, append(bytes.Clone(a), b...)) {
		t.Fatalf("%d of %d bytes; %+v", len(got), len(a)+len(b), d.Stats())
	}
}
