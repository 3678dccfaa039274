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

func newPacer(rate float64) *pacer {
	return &pacer{
		rate:     rate,
		start:    time.Now(),
		burst:    max(1, int64(rate*burstTime.Seconds())),
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
	var pace *pacer
	size := unpacedChunk
	if c.rate > 0 {
		pace = newPacer(c.rate)
		size = int(pace.burst)
	}
	buf := make([]byte, size)
	for {
		k := size
		if pace != nil {
			k = pace.allowance()
		}
		before := time.Now()
		n, err := src.master.Read(buf[:k])
		if n > 0 {
			if pace != nil {
				pace.took(n, time.Since(before) > minChunkTime)
			}
			d.read.Add(int64(n))
			out := buf[:n]
			if d.faults.any() || d.burst.Load() {
				out = d.inject(out)
			}
			if len(out) > 0 {
				w, werr := dst.master.Write(out)
				d.written.Add(int64(w))
				if werr != nil {
					c.pumpEnded(d, "writing "+dst.name, werr)
					return
				}
			}
		}
		if err != nil {
			c.pumpEnded(d, "reading "+src.name, err)
			return
		}
	}
}

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
