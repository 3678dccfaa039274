package autobaud

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"
)

// never is an await condition that takes no message.
func never(msg) bool { return false }

// lead is the leader's side: it climbs, steps down when the line
// degrades, and tries again later.
func (n *nego) lead(ctx context.Context) error {
	c := n.c
	base, baseAt := c.line.Counters(), time.Now()
	// The follower's counts: the base is its first COUNTS after the
	// settling, so that a stale one does not bring in the switch's damage.
	var peerBase Counters
	peerBaseOK := false
	var settledAt time.Time
	// A switch garbles what crosses the line meanwhile, and the link
	// repairs it for a while after, as after a transport came back: the
	// error rate counts from Settle after either.
	settle := time.Now()
	for {
		cur := c.Status().Rate
		if up := c.line.UpSince(); up.IsZero() || time.Since(up) < c.cfg.Settle || time.Now().Before(settle) {
			base, baseAt = c.line.Counters(), time.Now()
			peerBaseOK, settledAt = false, time.Now()
		}
		if !peerBaseOK && n.peerOK && n.peerAt.After(settledAt) {
			peerBase, peerBaseOK = n.peer, true
		}
		if time.Since(baseAt) >= c.cfg.DegradeWindow {
			// The frames that arrived damaged at either end, of all
			// that arrived: the line's frame error rate both ways. (Not
			// resends, which a late wake-up on a busy machine makes too.)
			now := c.line.Counters()
			errs := delta(now.FramesBad, base.FramesBad)
			frames := delta(now.FramesIn, base.FramesIn) + errs
			if peerBaseOK {
				pe := delta(n.peer.FramesBad, peerBase.FramesBad)
				errs += pe
				frames += delta(n.peer.FramesIn, peerBase.FramesIn) + pe
			}
			base, baseAt = now, time.Now()
			peerBase = n.peer
			ratio := float64(errs) / float64(max(frames, 1))
			lower := below(n.common, cur)
			lowerRatio, known := n.errAt[lower]
			if frames >= c.cfg.DegradeMin {
				n.errAt[cur] = ratio
			}
			upper, upperRatio := n.downFrom, n.errAt[n.downFrom]
			switch {
			case !degraded(errs, frames, c.cfg):
			case upper != 0 && ratio > upperRatio/2:
				// Stepping down did not help: the noise does not depend
				// on the rate. Back up, where the rate below is known now.
				c.holdFor(upper, 0)
				n.downFrom = 0
				c.log.Info(fmt.Sprintf("autobaud: %.0f %% of the frames damaged at %d baud, %.0f %% at %d: the rate is not the trouble; back up", 100*ratio, cur, 100*upperRatio, upper))
			case lower < c.cfg.Start:
			case known && lowerRatio > ratio/2:
				// The rate below was about as bad: noise that does not
				// depend on the rate, which stepping down does not cure.
				if !n.toldSame[cur] {
					c.log.Info(fmt.Sprintf("autobaud: %.0f %% of the frames damaged at %d baud, but %.0f %% at %d: staying", 100*ratio, cur, 100*lowerRatio, lower))
					n.toldSame[cur] = true
				}
			default:
				d := c.holdRate(cur)
				c.log.Info(fmt.Sprintf("autobaud: %d frames of %d damaged in %v at %d baud: stepping down to %d (up again in %v at the earliest)",
					errs, frames, c.cfg.DegradeWindow, cur, lower, d))
				if err := n.step(ctx, lower, "stepped down: frame errors"); err != nil {
					return err
				}
				if c.Status().Rate == lower {
					n.downFrom = cur
				}
				settle = time.Now().Add(c.cfg.Settle)
				continue
			}
		}
		if next := c.nextUp(n.common, cur); next > 0 {
			n.downFrom = 0
			if err := n.step(ctx, next, ""); err != nil {
				return err
			}
			settle = time.Now().Add(c.cfg.Settle)
			continue
		}
		if _, err := n.await(ctx, time.Now().Add(500*time.Millisecond), never); err != errTimeout {
			return err
		}
	}
}

// delta is now - then, 0 where a counter went back (the far end
// restarted).
func delta(now, then uint64) int {
	if now < then {
		return 0
	}
	return int(now - then)
}

// degraded reports whether errs of frames is a degraded line.
func degraded(errs, frames int, cfg Config) bool {
	return errs >= cfg.DegradeMin && float64(errs) > cfg.DegradeRatio*float64(max(frames, 1))
}

// below is the fastest of rates slower than cur, or 0.
func below(rates []int, cur int) int {
	best := 0
	for _, r := range rates {
		if r < cur {
			best = r
		}
	}
	return best
}

// nextUp is the next rate up from cur among rates when it may be tried
// now, or 0: the climb goes one rate at a time, and waits while the
// next one is held off.
func (c *Controller) nextUp(rates []int, cur int) int {
	for _, r := range rates {
		if r > cur {
			c.mu.Lock()
			until := c.hold[r]
			c.mu.Unlock()
			if time.Now().Before(until) {
				return 0
			}
			return r
		}
	}
	return 0
}

// step is the leader's switch to rate to: SWITCH, READY, both switch,
// PROBE and ECHO both ways and the follower's OK, or back. It fails only
// when the stream does (the port put back first).
func (n *nego) step(ctx context.Context, to int, why string) error {
	c := n.c
	from := c.Status().Rate
	n.seq++
	seq := n.seq
	delay := max(c.cfg.SwitchDelay, 3*c.line.RTT())
	c.setStepping(true)
	defer c.setStepping(false)
	c.log.Info(fmt.Sprintf("autobaud: switching from %d to %d baud", from, to))
	t0 := time.Now()
	if err := n.send(msg{typ: msgSwitch, seq: seq, from: from, to: to, delayMS: uint16(min(delay.Milliseconds(), 60000))}); err != nil {
		return err
	}
	m, err := n.await(ctx, t0.Add(c.cfg.ReadyTimeout), func(m msg) bool {
		return m.seq == seq && (m.typ == msgReady || m.typ == msgRefuse)
	})
	switch {
	case err == errTimeout:
		c.holdFor(to, retrySoon)
		c.log.Info(fmt.Sprintf("autobaud: no answer to the switch to %d baud within %v: staying at %d", to, c.cfg.ReadyTimeout, from))
		return n.send(msg{typ: msgAbort, seq: seq})
	case err != nil:
		return err
	case m.typ == msgRefuse:
		d := c.holdRate(to)
		c.log.Info(fmt.Sprintf("autobaud: the far end refused %d baud (%s): staying at %d, asking again in %v", to, m.reason, from, d))
		return nil
	}
	// The follower switches delay after its READY; READY took about half
	// the round trip to come.
	if wait := delay - time.Since(t0)/2; wait > 0 {
		if _, err := n.await(ctx, time.Now().Add(wait), never); err != errTimeout {
			return err
		}
	}
	n.probe = seq
	if err := c.switchTo(to); err != nil {
		d := c.holdRate(to)
		c.log.Warn(fmt.Sprintf("autobaud: cannot set %d baud here: %v; staying at %d (trying again in %v)", to, err, from, d))
		_ = c.switchTo(from)
		return nil
	}
	start := time.Now()
	ok, carried, err := n.verify(ctx, seq, start.Add(c.cfg.VerifyTimeout), true)
	if err != nil {
		c.switchBack(from)
		return err
	}
	if ok {
		c.verified(to, why, time.Since(start))
		return nil
	}
	if carried {
		// The pattern crossed both ways; only the far end's OK did not
		// come: the rate works, so it is tried again soon.
		c.holdFor(to, retrySoon)
		c.fallback(from, fmt.Sprintf("no OK from the far end at %d baud within %v (the pattern crossed both ways)", to, 2*c.cfg.VerifyTimeout), retrySoon)
		return nil
	}
	d := c.holdRate(to)
	c.fallback(from, fmt.Sprintf("no verified traffic at %d baud within %v", to, c.cfg.VerifyTimeout), d)
	return nil
}

// verify sends this end's PROBE of seq and waits until deadline for the
// far end's PROBE and the ECHO of this end's, and with needOK the far
// end's OK. carried reports that the PROBE and ECHO came (only the OK did
// not).
//
// Once the PROBE and ECHO came, the wait for the OK goes on for another
// VerifyTimeout: the follower decided by its own deadline, about this
// one, and an OK it sent then may still be on its way (the link repairing
// a marginal line); it tells the follower's decision however late it
// comes, while going back without it would leave the two ends apart.
func (n *nego) verify(ctx context.Context, seq uint32, deadline time.Time, needOK bool) (ok, carried bool, err error) {
	if err := n.send(msg{typ: msgProbe, seq: seq, data: pattern}); err != nil {
		return false, false, err
	}
	gotProbe, gotEcho, gotOK := false, false, !needOK
	extended := false
	for !gotProbe || !gotEcho || !gotOK {
		m, err := n.await(ctx, deadline, func(m msg) bool { return m.seq == seq })
		if err == errTimeout && gotProbe && gotEcho && !extended {
			deadline, extended = deadline.Add(n.c.cfg.VerifyTimeout), true
			continue
		}
		if err == errTimeout {
			return false, gotProbe && gotEcho, nil
		}
		if err != nil {
			return false, false, err
		}
		switch m.typ {
		case msgProbe:
			gotProbe = gotProbe || bytes.Equal(m.data, pattern)
		case msgEcho:
			gotEcho = gotEcho || bytes.Equal(m.data, pattern)
		case msgOK:
			gotOK = true
		}
	}
	return true, true, nil
}

// retrySoon is how long a rate is held off after a switch that failed
// for want of a message, not of the line (no READY, no OK).
const retrySoon = 2 * time.Second

// follow is the follower's side: it answers each SWITCH.
func (n *nego) follow(ctx context.Context) error {
	c := n.c
	every := max(100*time.Millisecond, c.cfg.DegradeWindow/5)
	for {
		// The leader judges the line by both ends' damaged frames: tell
		// it this end's, every fifth of its window, above the start
		// rate (below it never steps down; and on a slow line the
		// message costs most).
		if c.Status().Rate > c.cfg.Start {
			k := c.line.Counters()
			if err := n.send(msg{typ: msgCounts, framesIn: k.FramesIn, framesBad: k.FramesBad}); err != nil {
				return err
			}
		}
		m, err := n.await(ctx, time.Now().Add(every), func(m msg) bool { return m.typ == msgSwitch })
		if err == errTimeout {
			continue
		}
		if err != nil {
			return err
		}
		from := c.Status().Rate
		if !slices.Contains(c.cfg.Rates, m.to) {
			if err := n.send(msg{typ: msgRefuse, seq: m.seq, reason: fmt.Sprintf("%d baud is not among the rates offered here", m.to)}); err != nil {
				return err
			}
			continue
		}
		if m.from != from {
			c.log.Debug("autobaud: the far end switches from another rate than this end's", "far", m.from, "here", from)
		}
		n.seq = m.seq
		c.setStepping(true)
		err = n.followStep(ctx, m, from)
		c.setStepping(false)
		if err != nil {
			return err
		}
	}
}

// followStep is the follower's part of one switch.
func (n *nego) followStep(ctx context.Context, m msg, from int) error {
	c := n.c
	if err := n.send(msg{typ: msgReady, seq: m.seq}); err != nil {
		return err
	}
	delay := time.Duration(m.delayMS) * time.Millisecond
	_, err := n.await(ctx, time.Now().Add(delay), func(x msg) bool { return x.typ == msgAbort && x.seq == m.seq })
	if err == nil {
		c.log.Info(fmt.Sprintf("autobaud: the far end gave up the switch to %d baud", m.to))
		return nil
	}
	if err != errTimeout {
		return err
	}
	c.log.Info(fmt.Sprintf("autobaud: switching from %d to %d baud", from, m.to))
	n.probe = m.seq
	if err := c.switchTo(m.to); err != nil {
		c.log.Warn(fmt.Sprintf("autobaud: cannot set %d baud here: %v; staying at %d", m.to, err, from))
		_ = c.switchTo(from)
		return nil
	}
	start := time.Now()
	ok, _, err := n.verify(ctx, m.seq, start.Add(c.cfg.VerifyTimeout), false)
	if err != nil {
		c.switchBack(from)
		return err
	}
	if !ok {
		c.fallback(from, fmt.Sprintf("no verified traffic at %d baud within %v", m.to, c.cfg.VerifyTimeout), 0)
		return nil
	}
	if err := n.send(msg{typ: msgOK, seq: m.seq}); err != nil {
		return err
	}
	how := ""
	if m.to < from {
		how = "stepped down: frame errors"
	}
	c.verified(m.to, how, time.Since(start))
	return nil
}

// switchTo sets the port and tells the link.
func (c *Controller) switchTo(rate int) error {
	if err := c.port.SetSpeed(rate); err != nil {
		return err
	}
	if err := c.line.SetLineRate(int(float64(rate) / c.cfg.BitsPerByte)); err != nil {
		c.log.Debug("autobaud: the link did not take the new rate", "err", err)
	}
	c.mu.Lock()
	c.st.Rate, c.st.Since = rate, time.Now()
	c.mu.Unlock()
	return nil
}

// verified records a switch kept.
func (c *Controller) verified(rate int, why string, took time.Duration) {
	c.mu.Lock()
	c.st.Steps++
	if why == "" {
		why = "verified both ways"
	}
	steps := "steps"
	if c.st.Steps == 1 {
		steps = "step"
	}
	c.st.How = fmt.Sprintf("%s, %d %s", why, c.st.Steps, steps)
	c.reached = c.st.How
	if why == "verified both ways" {
		delete(c.backoff, rate)
	}
	c.mu.Unlock()
	c.log.Info(fmt.Sprintf("autobaud: %d baud verified both ways in %v", rate, took.Round(time.Millisecond)), "rate", rate)
}

// fallback puts the port back at rate after a switch that failed.
func (c *Controller) fallback(rate int, reason string, retry time.Duration) {
	err := c.switchTo(rate)
	c.mu.Lock()
	c.st.Fallbacks++
	c.st.How = c.reached + "; then " + reason + ", fell back"
	c.mu.Unlock()
	again := ""
	if retry > 0 {
		again = fmt.Sprintf(" (trying again in %v)", retry)
	}
	if err != nil {
		c.log.Error(fmt.Sprintf("autobaud: %s; cannot go back to %d baud: %v", reason, rate, err))
		return
	}
	c.log.Info(fmt.Sprintf("autobaud: %s: back to %d baud%s", reason, rate, again))
}

// holdRate holds rate off for its backoff, which doubles, and returns
// how long.
func (c *Controller) holdRate(rate int) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.backoff[rate]
	if d == 0 {
		d = c.cfg.Retry
	}
	c.hold[rate] = time.Now().Add(d)
	c.backoff[rate] = min(2*d, c.cfg.MaxRetry)
	return d
}

// holdFor holds rate off for d, its backoff unchanged.
func (c *Controller) holdFor(rate int, d time.Duration) {
	c.mu.Lock()
	c.hold[rate] = time.Now().Add(d)
	c.mu.Unlock()
}

func (c *Controller) setStepping(on bool) {
	c.mu.Lock()
	c.stepping = on
	c.stepAt = time.Now()
	if on {
		c.takenOver = false
	}
	c.mu.Unlock()
}

// switchBack returns to rate after a switch whose negotiation failed,
// unless the silence watch took the switch over (and went to the start
// rate, where the far end goes too).
func (c *Controller) switchBack(rate int) {
	c.mu.Lock()
	over := c.takenOver
	c.mu.Unlock()
	if !over {
		_ = c.switchTo(rate)
	}
}

// stepBound is the longest a switch holds the silence watch off: its
// delay, the verification with its extension, and a silence. A switch
// still under way after that is stuck (a message to the far end waits
// for a link that cannot carry it at this rate: its window full of frames
// the far end, at another rate, never acknowledges), and the silence
// watch takes over.
func (c *Controller) stepBound() time.Duration {
	return max(c.cfg.SwitchDelay, 3*c.line.RTT()) + 2*c.cfg.VerifyTimeout + c.cfg.Silence
}

// watchSilence returns to the start rate when no good frame arrives for
// Silence away from it, outside a switch: the far end, hearing nothing
// either, does the same, and the two meet there.
func (c *Controller) watchSilence(ctx context.Context) {
	tick := time.NewTicker(max(10*time.Millisecond, c.cfg.Silence/12))
	defer tick.Stop()
	last, lastAt := c.line.Counters().FramesIn, time.Now()
	heardAt := lastAt // when a good frame last arrived
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		in := c.line.Counters().FramesIn
		bound := c.stepBound()
		c.mu.Lock()
		stepping, rate, cur := c.stepping, c.st.Rate, c.cur
		stuck := stepping && time.Since(c.stepAt) >= bound
		c.mu.Unlock()
		if in != last {
			heardAt = time.Now()
		}
		if in != last || stepping && !stuck || rate == c.cfg.Start {
			last, lastAt = in, time.Now()
			continue
		}
		// A stuck switch has waited a silence already (stepBound): it
		// goes as soon as the line is quiet that long.
		if stuck && time.Since(heardAt) >= c.cfg.Silence {
			lastAt = heardAt
		}
		if quiet := time.Since(lastAt); quiet >= c.cfg.Silence {
			if stuck {
				c.mu.Lock()
				c.takenOver = true
				c.mu.Unlock()
			}
			if stuck && cur != nil {
				// The switch's negotiation waits on the line it lost:
				// end it, so that it does not go on from there once
				// the two ends meet again at the start rate.
				c.log.Info(fmt.Sprintf("autobaud: the switch at %d baud is stuck for %v", rate, bound.Round(time.Millisecond)))
				_ = cur.Close()
			}
			err := c.switchTo(c.cfg.Start)
			c.mu.Lock()
			c.st.Fallbacks++
			c.st.How = fmt.Sprintf("start rate again: heard nothing for %v at %d baud", quiet.Round(time.Millisecond), rate)
			c.reached = c.st.How
			c.mu.Unlock()
			if err != nil {
				c.log.Error(fmt.Sprintf("autobaud: heard nothing for %v at %d baud; cannot go back to the start rate %d: %v", quiet.Round(time.Millisecond), rate, c.cfg.Start, err))
			} else {
				c.log.Info(fmt.Sprintf("autobaud: heard nothing for %v at %d baud: back to the start rate %d", quiet.Round(time.Millisecond), rate, c.cfg.Start))
			}
			lastAt = time.Now()
		}
	}
}
