package fec

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestFieldTables(t *testing.T) {
	// α generates the whole multiplicative group, and the table agrees
	// with carry-less multiplication reduced by the polynomial.
	seen := map[byte]bool{}
	for i := 0; i < 255; i++ {
		seen[gfExp[i]] = true
	}
	if len(seen) != 255 || seen[0] {
		t.Fatalf("α generates %d elements", len(seen))
	}
	slow := func(a, b byte) byte {
		var p uint16
		x, y := uint16(a), uint16(b)
		for y != 0 {
			if y&1 != 0 {
				p ^= x
			}
			x <<= 1
			if x&0x100 != 0 {
				x ^= gfPoly
			}
			y >>= 1
		}
		return byte(p)
	}
	for a := 0; a < 256; a++ {
		for b := 0; b < 256; b++ {
			if got, want := mul(byte(a), byte(b)), slow(byte(a), byte(b)); got != want {
				t.Fatalf("%d·%d = %d, want %d", a, b, got, want)
			}
			if b != 0 && mul(div(byte(a), byte(b)), byte(b)) != byte(a) {
				t.Fatalf("(%d/%d)·%d ≠ %d", a, b, b, a)
			}
		}
		if a != 0 && mul(byte(a), inv(byte(a))) != 1 {
			t.Fatalf("%d·inv ≠ 1", a)
		}
	}
}

func TestGeneratorRoots(t *testing.T) {
	// Every codeword vanishes at α^0 … α^(2t−1): the parity is right.
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range []int{1, 2, 8, 32, MaxT} {
		c, _ := NewCode(tt)
		for _, n := range []int{2*tt + 1, 2*tt + 17, 255} {
			if n > 255 {
				continue
			}
			b := randBlock(rng, n)
			c.Encode(b)
			s := make([]byte, 2*tt)
			if !c.syndromes(b, s) {
				t.Fatalf("t=%d n=%d: encoded block has syndromes %x", tt, n, s)
			}
		}
	}
}

func randBlock(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// damage changes e distinct random bytes of b to other values.
func damage(rng *rand.Rand, b []byte, e int) {
	for _, i := range rng.Perm(len(b))[:e] {
		b[i] ^= byte(1 + rng.IntN(255))
	}
}

func TestSingleErrorsExhaustive(t *testing.T) {
	// Every position, every error value, for a full and a shortened block
	// of the smallest code, and every position of the largest level.
	rng := rand.New(rand.NewPCG(3, 4))
	c, _ := NewCode(1)
	for _, n := range []int{255, 40, 3} {
		want := randBlock(rng, n)
		c.Encode(want)
		for i := 0; i < n; i++ {
			for v := 1; v < 256; v++ {
				b := bytes.Clone(want)
				b[i] ^= byte(v)
				k, err := c.Decode(b)
				if err != nil || k != 1 || !bytes.Equal(b, want) {
					t.Fatalf("n=%d pos %d value %d: k=%d err=%v", n, i, v, k, err)
				}
			}
		}
	}
}

func TestDoubleErrorsExhaustivePositions(t *testing.T) {
	// t=2: every pair of positions of a full block, random values.
	rng := rand.New(rand.NewPCG(5, 6))
	c, _ := NewCode(2)
	want := randBlock(rng, 255)
	c.Encode(want)
	b := make([]byte, 255)
	for i := 0; i < 255; i++ {
		for j := i + 1; j < 255; j++ {
			copy(b, want)
			b[i] ^= byte(1 + rng.IntN(255))
			b[j] ^= byte(1 + rng.IntN(255))
			if k, err := c.Decode(b); err != nil || k != 2 || !bytes.Equal(b, want) {
				t.Fatalf("positions %d,%d: k=%d err=%v", i, j, k, err)
			}
		}
	}
}

func TestRandomErrorsUpToT(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tt := range Levels[1:] {
		c, _ := NewCode(tt)
		for _, n := range []int{255, 2*tt + 40, 2*tt + 1} {
			want := randBlock(rng, n)
			c.Encode(want)
			for trial := 0; trial < 60; trial++ {
				e := rng.IntN(tt + 1)
				if trial < 3 {
					e = tt // always the edge case
				}
				b := bytes.Clone(want)
				damage(rng, b, min(e, n))
				k, err := c.Decode(b)
				if err != nil || k != min(e, n) || !bytes.Equal(b, want) {
					t.Fatalf("t=%d n=%d errors=%d: corrected %d, err=%v", tt, n, e, k, err)
				}
			}
		}
	}
}

func TestBurstErrorsUpToT(t *testing.T) {
	// A burst of 8t−7 bits touches at most t bytes, wherever it starts.
	rng := rand.New(rand.NewPCG(9, 10))
	for _, tt := range Levels[1:] {
		c, _ := NewCode(tt)
		want := randBlock(rng, 255)
		c.Encode(want)
		for trial := 0; trial < 40; trial++ {
			bits := 8*tt - 7
			start := rng.IntN(255*8 - bits)
			b := bytes.Clone(want)
			for i := start; i < start+bits; i++ {
				b[i/8] ^= 1 << (i % 8) // every bit of the burst flipped
			}
			if _, err := c.Decode(b); err != nil || !bytes.Equal(b, want) {
				t.Fatalf("t=%d burst of %d bits at %d: err=%v", tt, bits, start, err)
			}
			// A burst of whole bytes replaced by garbage, t long.
			b = bytes.Clone(want)
			at := rng.IntN(255 - tt)
			for i := at; i < at+tt; i++ {
				b[i] = byte(rng.Uint32())
			}
			if _, err := c.Decode(b); err != nil || !bytes.Equal(b, want) {
				t.Fatalf("t=%d garbage burst of %d bytes at %d: err=%v", tt, tt, at, err)
			}
		}
	}
}

// TestBeyondT: more than t errors are reported, or (rarely, and less so
// the larger t) miscorrected to another codeword, which then differs from
// what was sent in more than t bytes: the link's CRC above catches that.
// Never is the block changed into something that is not a codeword.
func TestBeyondT(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, tt := range Levels[1:] {
		c, _ := NewCode(tt)
		want := randBlock(rng, 255)
		c.Encode(want)
		reported, wrong := 0, 0
		const trials = 200
		for trial := 0; trial < trials; trial++ {
			e := tt + 1 + rng.IntN(tt+8)
			b := bytes.Clone(want)
			damage(rng, b, e)
			got := bytes.Clone(b)
			_, err := c.Decode(b)
			s := make([]byte, 2*tt)
			switch {
			case err != nil:
				reported++
				if !bytes.Equal(b, got) {
					t.Fatalf("t=%d: an uncorrectable block was changed", tt)
				}
			case bytes.Equal(b, want):
				t.Fatalf("t=%d: %d errors corrected, more than t", tt, e)
			default:
				wrong++
				if !c.syndromes(b, s) {
					t.Fatalf("t=%d: decoder returned a non-codeword", tt)
				}
			}
		}
		// A random word lies within t of some codeword with probability
		// about C(255,t)·255^t/256^2t: 0.49 for t=2, 0.16 for 3, 0.04 for
		// 4, 1.2e-3 for 6, 2.1e-5 for 8, 1.5e-9 for 12, below 1e-13 on.
		if limit := map[int]int{2: 130, 3: 60, 4: 20}[tt]; (limit == 0 && wrong > 2) || wrong > limit {
			t.Errorf("t=%d: %d of %d overloaded blocks miscorrected", tt, wrong, trials)
		}
		t.Logf("t=%2d: beyond t, %d reported, %d miscorrected of %d", tt, reported, wrong, trials)
	}
}

func TestAllBlockSizes(t *testing.T) {
	// Every shortened length of one mid-size code, with t errors.
	rng := rand.New(rand.NewPCG(13, 14))
	c, _ := NewCode(8)
	for n := 17; n <= 255; n++ {
		want := randBlock(rng, n)
		c.Encode(want)
		b := bytes.Clone(want)
		damage(rng, b, 8)
		if k, err := c.Decode(b); err != nil || k != 8 || !bytes.Equal(b, want) {
			t.Fatalf("n=%d: k=%d err=%v", n, k, err)
		}
	}
}

func TestNewCodeLimits(t *testing.T) {
	for _, bad := range []int{0, -1, MaxT + 1} {
		if _, err := NewCode(bad); err == nil {
			t.Errorf("NewCode(%d) accepted", bad)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, tt := range []int{4, 16, 48} {
		b.Run(levelName(tt), func(b *testing.B) {
			c, _ := NewCode(tt)
			blk := randBlock(rand.New(rand.NewPCG(1, 1)), 255)
			b.SetBytes(int64(255 - 2*tt))
			for b.Loop() {
				c.Encode(blk)
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, tt := range []int{4, 16, 48} {
		for _, errs := range []int{0, tt / 2, tt} {
			b.Run(levelName(tt)+"/errors="+itoa(errs), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, 1))
				c, _ := NewCode(tt)
				want := randBlock(rng, 255)
				c.Encode(want)
				bad := bytes.Clone(want)
				damage(rng, bad, errs)
				blk := make([]byte, 255)
				b.SetBytes(int64(255 - 2*tt))
				for b.Loop() {
					copy(blk, bad)
					if _, err := c.Decode(blk); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkStream: a Writer and a Decoder together, blocks of 255 with
// about the byte errors of the BER each level is chosen for; MB/s of data.
func BenchmarkStream(b *testing.B) {
	for _, c := range []struct {
		level int
		ber   float64
	}{{3, 1e-4}, {5, 1e-3}, {7, 3e-3}, {10, 1e-2}} {
		b.Run(levelName(Levels[c.level])+"/BER="+strconv.FormatFloat(c.ber, 'g', -1, 64), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			data := randBlock(rng, 64<<10)
			var wire bytes.Buffer
			w, _ := NewWriter(&wire, 255)
			w.SetLevel(c.level)
			w.Write(data)
			w.Flush()
			line := wire.Bytes()
			ch := channel{rng: rng, ber: c.ber}
			ch.untilFlip = geometricDraw(rng, c.ber)
			ch.apply(line)
			d, _ := NewDecoder(255)
			out := make([]byte, 0, len(data)+1024)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				wire.Reset()
				w.Write(data)
				w.Flush()
				out = d.Feed(out[:0], line)
			}
		})
	}
}
