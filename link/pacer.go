package link

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// pacer keeps a slow line busy without letting writes pile up in the
// operating system's queue, where they would wait ahead of anything
// urgent: a frame is chosen only when the line has nearly drained what
// was written before it.
//
// Each wait for the line is a wake-up, so what the writer hands the OS at
// once (a slice, sliceLen) is as long as interactive data can afford to
// wait behind it: sliceInteractive while interactive payloads are about,
// sliceBulk once none went out for interactiveSpell (quiet). How much may
// still be queued when the writer writes again (the lead, slack) follows
// how late its wake-ups come, so that a busy machine does not leave the
// line idle between slices.
type pacer struct {
	rate  int           // bytes per second; 0 = no pacing
	free  time.Time     // when the line will have sent all we wrote
	slack time.Duration // how much may stay queued when we write again: the lead
	lead  int64         // slack, for the reader (queueSample): atomic
	base  time.Duration // the least lead
	late  time.Duration // how late wake-ups came lately (a decaying peak)
	quiet bool          // no interactive payload lately: bulk slices and lead
	q     OutputQueuer  // the transport's own queue gauge, if it has one
	timer *time.Timer   // ready's, made once
}

// Slices and leads: see pacer.
const (
	// sliceInteractive is a slice's line time while interactive payloads
	// are about: interactive data cut in after a slice waits little.
	sliceInteractive = 10 * time.Millisecond
	// sliceBulk is a slice's line time on a quiet line: about 25 writes
	// (and waits) a second of line kept full.
	sliceBulk = 40 * time.Millisecond
	// sliceMaxBytes bounds a slice at high rates: what the writer queues
	// at once stays well inside a tty's buffers.
	sliceMaxBytes = 4096
	// leadMin is the least lead.
	leadMin = 3 * time.Millisecond
)

func newPacer(rate int, t any) pacer {
	p := pacer{rate: rate}
	if rate > 0 {
		p.base = max(leadMin, lineTime(24, rate))
		p.slack = p.base
		p.lead = int64(p.base)
		p.q, _ = t.(OutputQueuer)
	}
	return p
}

// setQuiet tells the pacer whether interactive payloads went out lately.
func (p *pacer) setQuiet(quiet bool) {
	if p.quiet != quiet {
		p.quiet = quiet
		p.adapt()
	}
}

// maxLead is the most the lead grows to: a quarter of a slice.
func (p *pacer) maxLead() time.Duration {
	return max(p.base, lineTime(p.sliceLen(), p.rate)/4)
}

// adapt sets the lead from how late wake-ups came: twice the recent peak,
// between the least lead and maxLead.
func (p *pacer) adapt() {
	p.slack = min(p.maxLead(), max(p.base, 2*p.late))
	atomic.StoreInt64(&p.lead, int64(p.slack))
}

// leadNow is the lead as the writer set it last; any goroutine may ask.
func (p *pacer) leadNow() time.Duration { return time.Duration(atomic.LoadInt64(&p.lead)) }

// woke records a wake-up that came late after the time it was due.
func (p *pacer) woke(late time.Duration) {
	p.late -= p.late / 32 // a peak forgotten over some hundred wake-ups
	if late > p.late {
		p.late = late
	}
	p.adapt()
}

var errBroken = errors.New("transport broken")

// ready waits until the line can take the next frame.
func (p *pacer) ready(ctx context.Context, broken <-chan struct{}) error {
	if p.rate == 0 {
		return nil
	}
	for {
		var wait time.Duration
		now := time.Now()
		if p.free.After(now) {
			wait = p.free.Sub(now) - p.slack
		}
		if p.q != nil {
			if n, err := p.q.OutputQueued(); err == nil {
				// What the OS holds includes the bytes on their way
				// out; more than two slices is a queue.
				wait = max(wait, lineTime(n-2*p.sliceLen(), p.rate))
			}
		}
		if wait <= 0 {
			return nil
		}
		if p.timer == nil {
			p.timer = time.NewTimer(wait)
		} else {
			p.timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			p.timer.Stop()
			return ctx.Err()
		case <-broken:
			p.timer.Stop()
			return errBroken
		case <-p.timer.C:
		}
		p.woke(time.Since(now.Add(wait)))
	}
}

// sliceLen is how much of a frame goes to the OS at once on a paced
// line: a slice's worth of line time (sliceInteractive, or sliceBulk when
// quiet), so that a frame can be cut short.
func (p *pacer) sliceLen() int {
	d := sliceInteractive
	if p.quiet {
		d = sliceBulk
	}
	return max(16, min(sliceMaxBytes, int(time.Duration(p.rate)*d/time.Second)))
}

// delay holds the next write back by d, so that the line drains d's worth
// of bytes queued below us.
func (p *pacer) delay(d time.Duration) {
	if p.rate == 0 || d <= 0 {
		return
	}
	now := time.Now()
	if p.free.Before(now) {
		p.free = now
	}
	p.free = p.free.Add(d)
}

// sent records n bytes handed to the transport.
func (p *pacer) sent(n int) {
	if p.rate == 0 {
		return
	}
	now := time.Now()
	if p.free.Before(now) {
		p.free = now
	}
	p.free = p.free.Add(lineTime(n, p.rate))
}
