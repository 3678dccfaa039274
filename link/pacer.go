package link

import (
	"context"
	"errors"
	"time"
)

// pacer keeps a slow line busy without letting writes pile up in the
// operating system's queue, where they would wait ahead of anything
// urgent: a frame is chosen only when the line has nearly drained what
// was written before it.
type pacer struct {
	rate  int           // bytes per second; 0 = no pacing
	free  time.Time     // when the line will have sent all we wrote
	slack time.Duration // how much may stay queued when we write again
	q     OutputQueuer  // the transport's own queue gauge, if it has one
}

func newPacer(rate int, t any) pacer {
	p := pacer{rate: rate}
	if rate > 0 {
		p.slack = max(3*time.Millisecond, lineTime(24, rate))
		p.q, _ = t.(OutputQueuer)
	}
	return p
}

var errBroken = errors.New("transport broken")

// ready waits until the line can take the next frame.
func (p *pacer) ready(ctx context.Context, broken <-chan struct{}) error {
	if p.rate == 0 {
		return nil
	}
	for {
		var wait time.Duration
		if now := time.Now(); p.free.After(now) {
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
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-broken:
			t.Stop()
			return errBroken
		case <-t.C:
		}
	}
}

// sliceTime is the line time of one slice: long enough that a line kept
// full costs about 100 writes (and waits) a second, short enough that
// interactive data cut in after a slice waits little.
const sliceTime = 10 * time.Millisecond

// sliceLen is how much of a frame goes to the OS at once on a paced
// line: sliceTime's worth of bytes, so that a frame can be cut short.
func (p *pacer) sliceLen() int {
	return max(16, int(time.Duration(p.rate)*sliceTime/time.Second))
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
