package cable

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Pacing: an idle line may deliver up to burstTime's worth of bytes at once
// (what it saved up while idle); a busy line that the pump fell behind
// (a late wake-up) catches up by up to catchUpTime's worth. The pump reads
// at least minChunkTime's worth at a time so that it sleeps about once a
// millisecond, not once a byte; a read that waited longer than that found
// the line idle.
const (
	burstTime    = 4 * time.Millisecond
	catchUpTime  = 50 * time.Millisecond
	minChunkTime = time.Millisecond
	unpacedChunk = 32 << 10
)

// pacer hands out the bytes a line of rate bytes per second may carry. It
// counts against a fixed start time, so sleep overshoots do not accumulate
// into drift.
type pacer struct {
	rate     float64
	start    time.Time
	used     int64 // bytes carried or forfeited since start
	burst    int64
	catchUp  int64
	minChunk int64
}

func newPacer(rate float64, halfDuplex bool) *pacer {
	burst := burstTime
	if halfDuplex {
		// Each chunk waits out the collision guard before the next read:
		// a chunk may take that much more, or the line would fall behind.
		burst += collisionGuard
	}
	return &pacer{
		rate:     rate,
		start:    time.Now(),
		burst:    max(1, int64(rate*burst.Seconds())),
		catchUp:  max(1, int64(rate*catchUpTime.Seconds())),
		minChunk: max(1, int64(rate*minChunkTime.Seconds())),
	}
}

// due is how many bytes the line could have carried since start.
func (p *pacer) due() int64 {
	return int64(p.rate * time.Since(p.start).Seconds())
}

// allowance waits until the line can carry at least a minimum chunk and
// returns how many bytes it can carry now, at most a burst.
func (p *pacer) allowance() int {
	for {
		avail := p.due() - p.used
		if avail > p.catchUp {
			p.used += avail - p.catchUp
			avail = p.catchUp
		}
		if avail >= p.minChunk {
			return int(min(avail, p.burst))
		}
		next := p.start.Add(time.Duration(float64(p.used+p.minChunk) / p.rate * float64(time.Second)))
		time.Sleep(time.Until(next))
	}
}

// took records n bytes carried by a read; waited says the read had to wait
// for them, so the line was idle and saved up no more than a burst.
func (p *pacer) took(n int, waited bool) {
	if waited {
		p.used = max(p.used, p.due()-p.burst)
	}
	p.used += int64(n)
}

// pump carries bytes from src to dst through d until either end is closed.
func (c *Cable) pump(d *direction, src, dst *end) {
	defer c.pumps.Done()
	hd := c.halfDuplexOf(d)
	var pace *pacer
	size := unpacedChunk
	if c.rate > 0 {
		pace = newPacer(c.rate, hd != nil)
		size = int(pace.burst)
	}
	rates := c.newRateWatch(d, src, dst)
	var lat *latencyTimer
	if c.cfg.Latency > 0 {
		lat = newLatencyTimer(c.cfg.Latency, time.Now())
	}
	buf := make([]byte, size)
	for {
		k := len(buf)
		if pace != nil {
			k = pace.allowance()
		}
		if lat != nil {
			_ = src.master.SetReadDeadline(lat.deadline())
		}
		before := time.Now()
		n, err := src.master.Read(buf[:k])
		var out []byte
		if n > 0 {
			if pace != nil {
				pace.took(n, time.Since(before) > minChunkTime)
			}
			d.read.Add(int64(n))
			out = buf[:n]
			if d.faults.any() || d.burst.Load() {
				out = d.inject(out)
			}
			if rates != nil {
				// Speeds as the ends have them now, after the bytes
				// were written: a program sets its speed, then sends.
				if rates.check() {
					// The sending end changed its speed: pace at the new one.
					pace = newPacer(float64(rates.tx)/c.cfg.BitsPerByte, hd != nil)
					if int(pace.burst) > len(buf) {
						buf = make([]byte, pace.burst)
					}
				}
				if rates.mismatch() {
					out = misframe(out, rates.tx, rates.rx)
					d.misframed.Add(int64(n))
				}
				if c.cfg.MaxBaud > 0 && rates.tx > c.cfg.MaxBaud {
					// Faster than the cable carries: the signal is
					// smeared past recognition.
					for i := range out {
						out[i] = byte(d.rng[rngBurst].Uint32())
					}
					d.overspeed.Add(int64(len(out)))
				} else if m := c.cfg.MarginalBaud; m > 0 && rates.tx > m {
					d.marginalFlips(out, c.cfg.MarginalBER)
				}
			}
			if hd != nil {
				air := time.Duration(float64(n) / pace.rate * float64(time.Second))
				out = hd.carry(out, time.Now(), air)
				// The sending end hears its own bytes as they were on
				// the bus, collided or not.
				if _, werr := src.master.Write(out); werr == nil {
					hd.echoed.Add(int64(len(out)))
				}
			}
			if lat != nil {
				out = lat.add(out, time.Now())
			}
		}
		if lat != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			out, err = lat.expire(time.Now()), nil
		}
		if len(out) > 0 {
			w, werr := dst.master.Write(out)
			d.written.Add(int64(w))
			if werr != nil {
				c.pumpEnded(d, "writing "+dst.name, werr)
				return
			}
		}
		if err != nil {
			c.pumpEnded(d, "reading "+src.name, err)
			return
		}
	}
}

// rateWatch follows the speeds the two ends of one direction set.
type rateWatch struct {
	c        *Cable
	d        *direction
	src, dst *end
	tx, rx   int // the sending and the receiving end's speeds
	garbling bool
}

// newRateWatch returns nil where the cable does not follow rates: an
// unpaced cable, Config.FixedRate, or no way to read pty speeds here.
func (c *Cable) newRateWatch(d *direction, src, dst *end) *rateWatch {
	if c.rate == 0 || c.cfg.FixedRate || !followsRates {
		return nil
	}
	return &rateWatch{c: c, d: d, src: src, dst: dst, tx: c.cfg.Baud, rx: c.cfg.Baud}
}

// check reads the ends' speeds, once per chunk the line carries (two
// ioctls), and reports whether the sending end's changed. A speed that
// cannot be read, or 0 (B0, hang up), keeps the last one.
func (r *rateWatch) check() bool {
	changed := false
	if tx, err := endSpeed(r.src.slave); err == nil && tx > 0 && tx != r.tx {
		r.tx, changed = tx, true
		r.c.log.Info(fmt.Sprintf("cable: %s set %d baud", r.src.label, tx))
		if max := r.c.cfg.MaxBaud; max > 0 && tx > max {
			r.c.log.Info(fmt.Sprintf("cable %s: %s sends at %d baud, faster than the cable carries (%d): bytes arrive garbled", r.d.name, r.src.label, tx, max))
		} else if m := r.c.cfg.MarginalBaud; m > 0 && tx > m {
			r.c.log.Info(fmt.Sprintf("cable %s: %s sends at %d baud, above %d: bytes arrive with bit errors at %g", r.d.name, r.src.label, tx, m, r.c.cfg.MarginalBER))
		}
	}
	if rx, err := endSpeed(r.dst.slave); err == nil && rx > 0 {
		r.rx = rx
	}
	switch m := r.mismatch(); {
	case m && !r.garbling:
		r.c.log.Info(fmt.Sprintf("cable %s: %s sends at %d baud, %s listens at %d: bytes arrive garbled", r.d.name, r.src.label, r.tx, r.dst.label, r.rx))
	case !m && r.garbling:
		r.c.log.Info(fmt.Sprintf("cable %s: rates match again (%d baud)", r.d.name, r.tx))
	}
	r.garbling = r.mismatch()
	return changed
}

// mismatch reports whether the ends' speeds differ.
func (r *rateWatch) mismatch() bool { return r.tx != r.rx }

// pumpEnded logs why a pump stopped unless the cable closed its ends.
func (c *Cable) pumpEnded(d *direction, op string, err error) {
	if errors.Is(err, os.ErrClosed) {
		return
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("hang-up")
	}
	c.log.Warn(fmt.Sprintf("cable %s stopped %s: %v", d.name, op, err))
}
