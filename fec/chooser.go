package fec

import "math"

// Chooser picks the level for one direction of a line from what its
// receiving end measured: the symbols corrected in each block and the
// blocks lost (Decoder.OnBlock), or, while the code is off, the frames
// the link received good and damaged. It starts off (level 0).
//
// The level is the one that maximises the expected share of the line
// that arrives as intact frames: Efficiency(n, L) · (1 − P(block has more
// than t errors))^B for a frame spanning B blocks, or (1 − p)^FrameBytes
// without the code, at the symbol error rate p it estimates. It moves to
// a stronger level on a lower bound of the rate over the last few blocks
// (a few errors more than usual are chance), and to a weaker
// one (or off) only when an upper bound of the rate over the last several
// hundred blocks says so, so it turns the code off only after about
// 2.5·10⁵ error-free bytes (20 s at 115200 baud); each move must gain 2 %
// up, 1 % down.
// Runs of 3 to 15 lost blocks are taken for a noise burst, which no level
// repairs, and are not counted. A Chooser is not safe for concurrent use.
type Chooser struct {
	// FrameBytes is the typical length of a frame on the wire (default
	// 1024): what a frame risks without the code, and how many blocks it
	// spans with it.
	FrameBytes int

	n               int
	level           int
	fast, mid, slow rate
	run             []int // levels of the lost blocks of the current run
	sinceMove       int   // blocks observed since the last change
	badFrames       rate  // while off: frames damaged, decayed
	changes         int
}

// rate is a decayed count of symbols and of symbol errors.
type rate struct{ syms, errs float64 }

func (r *rate) add(syms, errs, decay float64) {
	r.syms = r.syms*decay + syms
	r.errs = r.errs*decay + errs
}

// Memories, per block of 255 symbols: the fast estimate follows about
// the last 10 blocks, the middle one 100, the slow one 1000 (2.5·10⁵
// symbols: with none wrong among them the upper bound is 1.2·10⁻⁵, low
// enough to turn the code off). The slow one restarts from the middle one
// when that one shows the errors it remembers are history.
const (
	fastDecay = 0.9
	midDecay  = 0.99
	slowDecay = 0.999
	// probeLevel is where the chooser starts when frames arrive damaged
	// while the code is off: strong enough for BER 3·10⁻³ (t = 16); the
	// blocks then measure the rate and it moves on from there.
	probeLevel = 7
	// burstMin … burstMax lost blocks in a row are a burst, not the rate.
	burstMin = 3
	burstMax = 16
	// The gain a move must bring: 2 % up, 1 % down (enough for the last
	// step, t = 6 to t = 4 at BER 1e-4, which gains 1.6 %; the up moves,
	// on a lower bound, do not swing back and forth).
	upGain   = 1.02
	downGain = 1.01
)

// NewChooser returns a chooser for blocks of codeword length n.
func NewChooser(n int) *Chooser {
	return &Chooser{FrameBytes: 1024, n: n}
}

// Level returns the level the direction should use now.
func (c *Chooser) Level() int { return c.level }

// Changes counts the level changes so far.
func (c *Chooser) Changes() int { return c.changes }

// SymbolErrorRate returns the estimated share of wrong bytes (the slow
// estimate), for status and metrics.
func (c *Chooser) SymbolErrorRate() float64 {
	if c.slow.syms == 0 {
		return 0
	}
	return c.slow.errs / c.slow.syms
}

// Observe takes one block's outcome: the level it was sent at, the symbols
// corrected, and whether it decoded. It has Decoder.OnBlock's signature.
func (c *Chooser) Observe(level, corrected int, ok bool) {
	if level <= 0 || level > MaxLevel {
		return
	}
	c.sinceMove++
	if !ok {
		c.run = append(c.run, level)
		switch {
		case len(c.run) < burstMax:
			return // a burst, perhaps: wait and see
		case len(c.run) == burstMax:
			for _, l := range c.run[:burstMax-1] {
				c.addLost(l)
			}
		}
		c.addLost(level) // no burst lasts this long: it is the line
		c.decide()
		return
	}
	if len(c.run) > 0 && len(c.run) < burstMin {
		for _, l := range c.run {
			c.addLost(l)
		}
	}
	c.run = c.run[:0]
	c.add(float64(corrected))
	c.decide()
}

// add counts one block with errs wrong symbols.
func (c *Chooser) add(errs float64) {
	f := float64(c.n) / 255
	c.fast.add(float64(c.n), errs, math.Pow(fastDecay, f))
	c.mid.add(float64(c.n), errs, math.Pow(midDecay, f))
	c.slow.add(float64(c.n), errs, math.Pow(slowDecay, f))
}

// lower is a cautious lower bound of the rate r measures: a handful of
// errors in a few blocks is chance, not a change of the line.
func (r rate) lower() float64 {
	if r.syms == 0 {
		return 0
	}
	return math.Max(0, r.errs-2*math.Sqrt(r.errs)-1) / r.syms
}

// upper is a generous upper bound of the rate r measures.
func (r rate) upper() float64 {
	if r.syms == 0 {
		return 1
	}
	return (r.errs + 2*math.Sqrt(r.errs+1) + 1) / r.syms
}

// addLost counts a lost block of level as having t+1+√(t+1) errors (t
// what the decoder corrects), about the mean of those that exceed t where
// blocks of that level fail.
func (c *Chooser) addLost(level int) {
	t := float64(Corrects(level))
	c.add(t + 1 + math.Sqrt(t+1))
}

// ObserveFrames takes, while the code is off, how many frames arrived
// good and how many damaged since the last call. Two damaged frames
// among the recent ones turn the code on at the probe level.
func (c *Chooser) ObserveFrames(good, bad int) {
	if c.level != 0 {
		return
	}
	c.badFrames.add(float64(good+bad), float64(bad), math.Pow(0.95, float64(good+bad)))
	if c.badFrames.errs >= 2 {
		probe := c.probe()
		for !ValidLevel(c.n, probe) {
			probe-- // short blocks: the strongest they allow
		}
		c.move(probe)
		c.fast, c.mid, c.slow = rate{}, rate{}, rate{}
	}
}

// probe is the level the code starts at from off: the best one for twice
// the byte error rate that damages the share of frames seen damaged (a
// few frames tell little; the blocks then measure the rate and the
// chooser moves on quickly up, slowly down), at least 1, and probeLevel
// when nearly every frame was damaged. Starting at probeLevel always cost
// a line at BER 1e-4 about a tenth of its goodput for the first thousand
// blocks, which the chooser takes to move down.
func (c *Chooser) probe() int {
	f := c.badFrames.errs / c.badFrames.syms
	if f >= 0.95 {
		return max(probeLevel, c.bestFor(2*-math.Log(0.05)/float64(max(c.FrameBytes, 1))))
	}
	return max(1, c.bestFor(2*-math.Log1p(-f)/float64(max(c.FrameBytes, 1))))
}

// bestFor is the level best at byte error rate p.
func (c *Chooser) bestFor(p float64) int {
	l, _ := c.best(p)
	return l
}

func (c *Chooser) move(level int) {
	if level != c.level {
		c.level = level
		c.changes++
		c.sinceMove = 0
		c.badFrames = rate{}
	}
}

// decide moves up on a lower bound of the fast estimate (or the slow
// point estimate), down on the slow upper bound.
func (c *Chooser) decide() {
	if c.fast.syms < 2*float64(c.n) {
		return
	}
	pUp := math.Max(c.fast.lower(), c.slow.errs/c.slow.syms)
	if best, gain := c.best(pUp); best > c.level && gain >= upGain {
		c.move(best)
		return
	}
	if c.sinceMove < 8 {
		return
	}
	if c.mid.upper() < c.slow.errs/c.slow.syms {
		c.slow = c.mid
	}
	pDown := c.slow.upper()
	if best, gain := c.best(pDown); best < c.level && gain >= downGain {
		c.move(best)
	}
}

// best returns the level of the highest expected efficiency at symbol
// error rate p among the levels the block length allows, and its gain
// over the current level.
func (c *Chooser) best(p float64) (int, float64) {
	bestL, bestE := 0, c.expect(0, p)
	cur := bestE
	for l := 1; l <= MaxLevel; l++ {
		if !ValidLevel(c.n, l) {
			break
		}
		e := c.expect(l, p)
		if l == c.level {
			cur = e
		}
		if e > bestE {
			bestL, bestE = l, e
		}
	}
	if cur <= 0 {
		return bestL, math.Inf(1)
	}
	return bestL, bestE / cur
}

// expect is the expected share of the line delivered in intact frames at
// level with symbol error rate p.
func (c *Chooser) expect(level int, p float64) float64 {
	fb := float64(max(c.FrameBytes, 1))
	if level == 0 {
		return math.Pow(1-p, fb)
	}
	blocks := math.Ceil(fb / float64(Capacity(c.n, level)))
	return Efficiency(c.n, level) * math.Pow(1-BlockFailure(c.n, Corrects(level), p), blocks)
}

// BlockFailure returns the probability that a block of n symbols, each
// wrong with probability p independently, has more than t wrong.
func BlockFailure(n, t int, p float64) float64 {
	switch {
	case p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	// The binomial terms above t: the first in log space, the others by
	// their ratio, until they no longer count.
	lgN, _ := math.Lgamma(float64(n + 1))
	a, _ := math.Lgamma(float64(t + 2))
	b, _ := math.Lgamma(float64(n - t))
	i := t + 1
	term := math.Exp(lgN - a - b + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	ratio := p / (1 - p)
	sum := 0.0
	for ; i <= n; i++ {
		sum += term
		if term < sum*1e-12 && float64(i) > float64(n)*p {
			break
		}
		term *= float64(n-i) / float64(i+1) * ratio
	}
	return math.Min(sum, 1)
}
