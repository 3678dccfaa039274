package fec

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzCodeDecode: whatever the block, Decode either reports it
// uncorrectable and leaves it as it was, or returns a codeword that
// differs from it in exactly the number of bytes it says, at most t.
func FuzzCodeDecode(f *testing.F) {
	c, _ := NewCode(8)
	good := make([]byte, 255)
	for i := range good {
		good[i] = byte(i * 7)
	}
	c.Encode(good)
	f.Add(good, uint8(5))
	f.Add(bytes.Repeat([]byte{0xFF}, 255), uint8(1))
	f.Add([]byte{1, 2, 3}, uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, lv uint8) {
		level := 1 + int(lv)%MaxLevel
		tt := Levels[level]
		if len(in) > 255 {
			in = in[:255]
		}
		for len(in) <= 2*tt {
			in = append(in, byte(len(in)))
		}
		code := codeFor(level)
		b := bytes.Clone(in)
		k, err := code.Decode(b)
		if err != nil {
			if !bytes.Equal(b, in) {
				t.Fatal("an uncorrectable block was changed")
			}
			return
		}
		diff := 0
		for i := range b {
			if b[i] != in[i] {
				diff++
			}
		}
		s := make([]byte, 2*tt)
		if diff != k || k > tt || !code.syndromes(b, s) {
			t.Fatalf("corrected %d, changed %d, t=%d, codeword %v", k, diff, tt, code.syndromes(b, s))
		}
	})
}

// FuzzDecoder: arbitrary bytes in arbitrary reads never panic, never make
// the decoder hold more than two blocks beyond a read, and never yield
// more than came in, but for one LossMark per event it reports.
func FuzzDecoder(f *testing.F) {
	var wire bytes.Buffer
	w, _ := NewWriter(&wire, 64)
	w.SetLevel(3)
	w.Write([]byte("hello, noisy world: a stream in blocks"))
	w.SetLevel(0)
	w.Write([]byte("plain again"))
	f.Add(wire.Bytes(), uint16(7))
	f.Add([]byte{0x1A, 0xCF, 0xFC, 0x1D, 0, 0}, uint16(1))
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		d, _ := NewDecoder(64)
		var out []byte
		step := 1 + int(cut)%97
		for rest := in; len(rest) > 0; {
			k := min(step, len(rest))
			out = d.Feed(out, rest[:k])
			rest = rest[k:]
			if d.Buffered() > 2*(d.size+slipWindow)+k {
				t.Fatalf("holds %d bytes", d.Buffered())
			}
		}
		s := d.Stats()
		if marks := s.Uncorrectable + s.SyncLost + s.Resyncs; len(out) > len(in)+int(marks) {
			t.Fatalf("%d bytes in, %d out, %d marks", len(in), len(out), marks)
		}
	})
}

// FuzzDamagedFrames: link frames (COBS, CRC-32C, 0x00) through blocks of
// a strong level, damaged as the fuzzer says (bit flips, bytes dropped,
// garbage inserted). The frames that pass the CRC are frames that were
// sent, in order, none twice; and a frame lost or damaged is always
// accompanied by an event the decoder reports (a lost block, a lost sync,
// plain bytes passed on): damage it corrected is never visible above it.
// (At levels with t ≥ 12 a random overloaded block is miscorrected about
// once in 10⁹; weaker levels rely on the CRC for that, see TestBeyondT.)
func FuzzDamagedFrames(f *testing.F) {
	f.Add([]byte{0, 10, 1, 1, 200, 0, 2, 3, 0, 3, 9, 40}, uint8(0))
	f.Add([]byte{1, 0, 0, 2, 1, 0}, uint8(3))
	f.Fuzz(func(t *testing.T, ops []byte, lv uint8) {
		level := 6 + int(lv)%(MaxLevel-5) // t ≥ 12
		var frames [][]byte
		var stream []byte
		for i := 0; i < 24; i++ {
			body := bytes.Repeat([]byte{byte(i), 0, byte(i * 31)}, 5+i*7%60)
			frames = append(frames, body)
			stream = cobsFrame(stream, body)
		}
		var wire bytes.Buffer
		w, _ := NewWriter(&wire, 255)
		w.SetLevel(level)
		w.Write(stream)
		w.Flush()
		line := bytes.Clone(wire.Bytes())
		// Each op is 3 bytes: kind, position (16 bits); at most 64 of them
		// (more only make the test slow: each copies the line).
		ops = ops[:min(len(ops), 3*64)]
		for len(ops) >= 3 && len(line) > 0 {
			pos := int(binary.BigEndian.Uint16(ops[1:])) % len(line)
			switch ops[0] % 4 {
			case 0:
				line[pos] ^= 1 << (ops[1] % 8)
			case 1:
				line = append(line[:pos], line[pos+1:]...)
			case 2:
				line = append(line[:pos], append([]byte{ops[2]}, line[pos:]...)...)
			case 3:
				n := int(ops[2]) % 64
				line = append(line[:pos], append(bytes.Repeat([]byte{ops[1]}, n), line[pos:]...)...)
			}
			ops = ops[3:]
		}
		// The line goes on after the damage (a block cut short at the
		// end would only wait for its last bytes).
		wire.Reset()
		w.Write(cobsFrame(nil, []byte("the end")))
		w.Flush()
		line = append(line, wire.Bytes()...)
		frames = append(frames, []byte("the end"))
		d, _ := NewDecoder(255)
		out := d.Feed(nil, line)
		got, bad := parseFrames(out)
		if !isSubsequence(got, frames) {
			t.Fatal("frames out of order, repeated, or not sent")
		}
		s := d.Stats()
		reported := s.Uncorrectable+s.SyncLost+s.RawBytes > 0
		if (bad > 0 || len(got) < len(frames)) && !reported {
			t.Fatalf("%d of %d frames lost, %d bad, nothing reported: %+v", len(frames)-len(got), len(frames), bad, s)
		}
	})
}
