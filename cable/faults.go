package cable

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// maxDupChunk is the longest run of bytes a duplication repeats.
const maxDupChunk = 16

// never is a distance to the next event that is never reached.
const never = math.MaxInt64 / 4

// Faults are the line faults injected into one direction of the cable. Each
// probability is in [0, 1]; zero disables that fault.
type Faults struct {
	// BER is the bit error rate: each bit is flipped with this probability
	// (1e-5 is a poor line, 1e-3 a very noisy one).
	BER float64
	// DropRate is the probability that a byte is lost.
	DropRate float64
	// InsertRate is the probability that a random garbage byte appears on
	// the line before a byte.
	InsertRate float64
	// DupRate is the probability, per byte, that the line repeats a chunk:
	// the last 1 to 16 bytes it carried, that byte included, arrive twice.
	DupRate float64
	// BurstEvery and BurstFor make noise bursts: every BurstEvery (from the
	// cable's start), for BurstFor, every byte carried is replaced by a
	// random one. Both zero: no bursts.
	BurstEvery, BurstFor time.Duration
}

// validate checks f; name says which direction it is for.
func (f Faults) validate(name string) error {
	for _, p := range []struct {
		flag string
		v    float64
	}{{"BER", f.BER}, {"drop rate", f.DropRate}, {"insert rate", f.InsertRate}, {"duplication rate", f.DupRate}} {
		if math.IsNaN(p.v) || p.v < 0 || p.v > 1 {
			return fmt.Errorf("cable: %s %s %v must be a probability between 0 and 1", name, p.flag, p.v)
		}
	}
	return checkPeriod(name+" noise burst", f.BurstEvery, f.BurstFor)
}

// checkPeriod validates an "every, for" pair.
func checkPeriod(what string, every, dur time.Duration) error {
	switch {
	case every < 0 || dur < 0:
		return fmt.Errorf("cable: %s period and duration must not be negative", what)
	case every == 0 && dur != 0:
		return fmt.Errorf("cable: %s duration %v given without a period", what, dur)
	case every > 0 && dur == 0:
		return fmt.Errorf("cable: %s period %v given without a duration", what, every)
	case every > 0 && dur >= every:
		return fmt.Errorf("cable: %s duration %v must be shorter than its period %v", what, dur, every)
	}
	return nil
}

func (f Faults) any() bool {
	return f.BER > 0 || f.DropRate > 0 || f.InsertRate > 0 || f.DupRate > 0 || f.BurstEvery > 0
}

// String lists the enabled faults, or "none".
func (f Faults) String() string {
	s := ""
	add := func(format string, a ...any) {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf(format, a...)
	}
	if f.BER > 0 {
		add("BER %g", f.BER)
	}
	if f.DropRate > 0 {
		add("drop %g", f.DropRate)
	}
	if f.InsertRate > 0 {
		add("insert %g", f.InsertRate)
	}
	if f.DupRate > 0 {
		add("dup %g", f.DupRate)
	}
	if f.BurstEvery > 0 {
		add("noise %v every %v", f.BurstFor, f.BurstEvery)
	}
	if s == "" {
		return "none"
	}
	return s
}

// Random streams of a direction, one per kind of fault, so that what one
// kind draws does not depend on how the traffic was split into chunks.
const (
	rngFlip = iota
	rngDrop
	rngInsert
	rngDup
	rngBurst
	rngCount
)

// direction is one way through the cable: its faults, random sources,
// counters and buffers. Its pump goroutine is the only user of the random
// sources, the event distances and the buffers; a new pump starts only
// after the old one ended.
type direction struct {
	name   string // "A→B"
	faults Faults
	rng    [rngCount]*rand.Rand
	log    *slog.Logger

	// Distances, in bits or bytes, to the next event of each kind.
	untilFlip, untilDrop, untilInsert, untilDup int64
	untilMarginal                               int64 // bits, at a marginal rate (Config.MarginalBER)

	out, out2 []byte
	hist      [maxDupChunk]byte // the last bytes carried, for duplication
	histLen   int
	burst     atomic.Bool

	read, written, flipped, dropped, inserted, dupChunks, duplicated, garbled, bursts, misframed, collided, echoed, overspeed, marginal atomic.Int64
}

func newDirection(name string, f Faults, seed, stream uint64, log *slog.Logger) *direction {
	d := &direction{name: name, faults: f, log: log}
	for i := range d.rng {
		d.rng[i] = rand.New(rand.NewPCG(seed, stream*rngCount+uint64(i)))
	}
	d.untilFlip = geometric(d.rng[rngFlip], f.BER)
	d.untilDrop = geometric(d.rng[rngDrop], f.DropRate)
	d.untilInsert = geometric(d.rng[rngInsert], f.InsertRate)
	d.untilDup = geometric(d.rng[rngDup], f.DupRate)
	return d
}

// marginalFlips flips the bits of in at ber, the errors of a rate the
// cable carries badly (drawn from the burst stream, which only faults
// that replace bytes use otherwise).
func (d *direction) marginalFlips(in []byte, ber float64) {
	total := 8 * int64(len(in))
	pos := d.untilMarginal
	flips := int64(0)
	for pos < total {
		in[pos/8] ^= 1 << (pos % 8)
		flips++
		pos += 1 + geometric(d.rng[rngBurst], ber)
	}
	d.untilMarginal = pos - total
	d.flipped.Add(flips)
	d.marginal.Add(int64(len(in)))
}

// geometric draws how many trials pass before the next event of probability
// p: P(k) = (1-p)^k p.
func geometric(r *rand.Rand, p float64) int64 {
	switch {
	case p <= 0:
		return never
	case p >= 1:
		return 0
	}
	u := 1 - r.Float64() // (0, 1]
	k := math.Floor(math.Log(u) / math.Log1p(-p))
	if k >= never {
		return never
	}
	return int64(k)
}

// inject applies the faults to a chunk the line carries. It may modify in
// and returns what arrives at the other end.
func (d *direction) inject(in []byte) []byte {
	f := &d.faults
	debug := d.log.Enabled(context.Background(), slog.LevelDebug)

	if d.burst.Load() {
		for i := range in {
			in[i] = byte(d.rng[rngBurst].Uint32())
		}
		d.garbled.Add(int64(len(in)))
	}

	if f.BER > 0 {
		total := 8 * int64(len(in))
		pos := d.untilFlip
		flips := int64(0)
		for pos < total {
			in[pos/8] ^= 1 << (pos % 8)
			flips++
			pos += 1 + geometric(d.rng[rngFlip], f.BER)
		}
		d.untilFlip = pos - total
		d.flipped.Add(flips)
	}

	out := in
	if f.DropRate > 0 || f.InsertRate > 0 {
		out = d.out[:0]
		for _, b := range in {
			if d.untilInsert == 0 {
				g := byte(d.rng[rngInsert].Uint32())
				out = append(out, g)
				d.inserted.Add(1)
				d.untilInsert = geometric(d.rng[rngInsert], f.InsertRate)
				if debug {
					d.log.Debug("cable: inserted a garbage byte", "dir", d.name, "byte", g)
				}
			} else {
				d.untilInsert--
			}
			if d.untilDrop == 0 {
				d.dropped.Add(1)
				d.untilDrop = geometric(d.rng[rngDrop], f.DropRate)
				if debug {
					d.log.Debug("cable: dropped a byte", "dir", d.name)
				}
				continue
			}
			d.untilDrop--
			out = append(out, b)
		}
		d.out = out
	}

	if f.DupRate > 0 {
		out2 := d.out2[:0]
		for _, b := range out {
			out2 = append(out2, b)
			copy(d.hist[:], d.hist[1:])
			d.hist[maxDupChunk-1] = b
			d.histLen = min(d.histLen+1, maxDupChunk)
			if d.untilDup > 0 {
				d.untilDup--
				continue
			}
			// The line repeats the last 1 to 16 bytes it carried.
			n := min(1+d.rng[rngDup].IntN(maxDupChunk), d.histLen)
			out2 = append(out2, d.hist[maxDupChunk-n:]...)
			d.dupChunks.Add(1)
			d.duplicated.Add(int64(n))
			if debug {
				d.log.Debug("cable: duplicated a chunk", "dir", d.name, "bytes", n)
			}
			d.untilDup = geometric(d.rng[rngDup], f.DupRate)
		}
		d.out2 = out2
		out = out2
	}
	return out
}

// stats returns d's counters.
func (d *direction) stats() DirectionStats {
	return DirectionStats{
		Read:        d.read.Load(),
		Written:     d.written.Load(),
		BitsFlipped: d.flipped.Load(),
		Dropped:     d.dropped.Load(),
		Inserted:    d.inserted.Load(),
		DupChunks:   d.dupChunks.Load(),
		Duplicated:  d.duplicated.Load(),
		Garbled:     d.garbled.Load(),
		Bursts:      d.bursts.Load(),
		Misframed:   d.misframed.Load(),
		Collided:    d.collided.Load(),
		Echoed:      d.echoed.Load(),
		Overspeed:   d.overspeed.Load(),
		Marginal:    d.marginal.Load(),
	}
}
