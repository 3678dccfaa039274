package fec

import (
	"io"
	"math"
	"math/rand/v2"
	"testing"
)

func TestBlockFailure(t *testing.T) {
	// Against a direct sum of the binomial terms.
	for _, c := range []struct {
		n, t int
		p    float64
	}{{255, 2, 8e-4}, {255, 8, 0.008}, {255, 32, 0.077}, {255, 48, 0.15}, {64, 4, 0.01}, {255, 0, 0.5}} {
		want := 0.0
		for i := c.t + 1; i <= c.n; i++ {
			lc, _ := math.Lgamma(float64(c.n + 1))
			la, _ := math.Lgamma(float64(i + 1))
			lb, _ := math.Lgamma(float64(c.n - i + 1))
			want += math.Exp(lc - la - lb + float64(i)*math.Log(c.p) + float64(c.n-i)*math.Log1p(-c.p))
		}
		if got := BlockFailure(c.n, c.t, c.p); math.Abs(got-want) > 1e-9*want+1e-300 {
			t.Errorf("BlockFailure(%d, %d, %g) = %g, want %g", c.n, c.t, c.p, got, want)
		}
	}
	if BlockFailure(255, 4, 0) != 0 || BlockFailure(255, 4, 1) != 1 {
		t.Error("edges")
	}
}

// feed gives the chooser blocks of a line with byte error rate p at the
// level it chooses, as a receiver would see them, and returns the level
// after the given number of blocks.
func feed(c *Chooser, rng *rand.Rand, p float64, blocks int) int {
	for i := 0; i < blocks; i++ {
		l := c.Level()
		if l == 0 {
			// Off: frames of FrameBytes, each damaged with 1−(1−p)^len.
			bad := 0
			if rng.Float64() < 1-math.Pow(1-p, float64(c.FrameBytes)) {
				bad = 1
			}
			c.ObserveFrames(1-bad, bad)
			continue
		}
		e := 0
		for j := 0; j < 255; j++ {
			if rng.Float64() < p {
				e++
			}
		}
		c.Observe(l, e, e <= Levels[l])
	}
	return c.Level()
}

func TestChooserSettles(t *testing.T) {
	// From off, the level a line of each bit error rate settles at.
	rng := rand.New(rand.NewPCG(41, 42))
	for _, tc := range []struct {
		ber      float64
		min, max int // acceptable t
	}{{0, 0, 0}, {1e-6, 0, 0}, {1e-4, 2, 4}, {1e-3, 6, 12}, {3e-3, 12, 20}, {1e-2, 32, 40}, {2e-2, 48, 48}} {
		p := 1 - math.Pow(1-tc.ber, 8)
		c := NewChooser(255)
		l := feed(c, rng, p, 3000)
		if tt := Levels[l]; tt < tc.min || tt > tc.max {
			t.Errorf("BER %g: settled at t=%d, want %d…%d", tc.ber, tt, tc.min, tc.max)
		}
		t.Logf("BER %g: t=%d after %d changes, estimated byte error rate %.2g (true %.2g)", tc.ber, Levels[l], c.Changes(), c.SymbolErrorRate(), p)
	}
}

func TestChooserBurstsAndRecovery(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	c := NewChooser(255)
	feed(c, rng, 1-math.Pow(1-1e-3, 8), 2000)
	before := c.Level()
	// A noise burst: 9 blocks lost in a row, then the same line.
	for i := 0; i < 9; i++ {
		c.Observe(c.Level(), 0, false)
	}
	if c.Level() != before {
		t.Errorf("a burst moved the level from %d to %d", before, c.Level())
	}
	// The line turns bad: every block lost; the chooser climbs.
	for i := 0; i < 40 && Levels[c.Level()] < 32; i++ {
		c.Observe(c.Level(), 0, false)
		if i > burstMax {
			feed(c, rng, 1-math.Pow(1-1e-2, 8), 1)
		}
	}
	if l := feed(c, rng, 1-math.Pow(1-1e-2, 8), 2000); Levels[l] < 32 {
		t.Errorf("at BER 1e-2 after a clean spell: t=%d", Levels[l])
	}
	// And back to clean: off again, within 45 s of a 115200 line
	// (11.5 kB/s: 2000 blocks).
	if l := feed(c, rng, 0, 2000); l != 0 {
		t.Errorf("clean again: still at t=%d", Levels[l])
	}
}

// Short blocks: the chooser stays within the levels they allow.
func TestChooserShortBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(45, 46))
	for _, n := range []int{MinBlock, 64, 100} {
		c := NewChooser(n)
		var w, _ = NewWriter(io.Discard, n)
		for i := 0; i < 3000; i++ {
			if err := w.SetLevel(c.Level()); err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			if c.Level() == 0 {
				c.ObserveFrames(0, 1)
				continue
			}
			e := 0
			for j := 0; j < n; j++ {
				if rng.Float64() < 0.05 {
					e++
				}
			}
			c.Observe(c.Level(), e, e <= Corrects(c.Level()))
		}
		if c.Level() == 0 || !ValidLevel(n, c.Level()) {
			t.Errorf("n=%d: level %d", n, c.Level())
		}
	}
}

// From off, the code starts at a level sized from the share of frames
// that arrived damaged: about the best one for BER 1e-4 when three frames
// in five of 1 KiB are damaged (rather than t = 16, which costs a tenth of
// the line until the chooser moves down), and at least t = 16 when every
// frame is.
func TestChooserProbeFromFrames(t *testing.T) {
	c := NewChooser(DefaultBlock)
	for c.Level() == 0 {
		c.ObserveFrames(2, 3) // 60 %: BER ≈ 1e-4 for 1 KiB frames
	}
	if l := c.Level(); l < 2 || l > 4 {
		t.Errorf("level %d from 60 %% damaged frames: want 2 to 4, sized from the frames, not probeLevel", l)
	}

	c = NewChooser(DefaultBlock)
	for c.Level() == 0 {
		c.ObserveFrames(0, 1)
	}
	if l := c.Level(); l < probeLevel {
		t.Errorf("level %d with every frame damaged: want at least %d", l, probeLevel)
	}

	c = NewChooser(64) // short blocks: what they allow
	for c.Level() == 0 {
		c.ObserveFrames(0, 1)
	}
	if !ValidLevel(64, c.Level()) {
		t.Errorf("level %d not valid for 64-byte blocks", c.Level())
	}
}
