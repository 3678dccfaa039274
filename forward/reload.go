package forward

import (
	"errors"
	"fmt"
	"slices"
)

// Changes is what Apply changed.
type Changes struct {
	Added   []Forward // forwards started
	Removed []Forward // forwards stopped
	// Retargeted are remote forwards whose destination changed, as they
	// are now; the far end's listener stayed open.
	Retargeted []Forward
	// Rules are the new exit rules when they changed, else nil.
	Rules []Rule
	// RulesChanged reports whether the exit rules changed.
	RulesChanged bool
}

// Empty reports whether Apply changed nothing.
func (c Changes) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Retargeted) == 0 && !c.RulesChanged
}

// Apply makes forwards and rules the ones the forwarder runs, while it
// runs (sockmux link's SIGHUP):
//
//   - a forward that runs and is in forwards is left alone, with its
//     listener and its connections;
//   - a forward that runs and is not in forwards stops: its listener
//     closes (for a remote forward the far end is asked to close its
//     listener), and connections under way through it go on;
//   - a forward in forwards that does not run starts;
//   - a remote forward whose listen address stays but whose destination
//     changes keeps the far end's listener; new connections go to the new
//     destination;
//   - rules replace the exit rules as a whole, for streams that arrive
//     from now on.
//
// Forwards are stopped before others start, so a port can pass from one
// forward to another. A forward that cannot start (a port in use) is left
// out and named in the error; everything else is applied all the same,
// and a later Apply tries it again. Every change is logged.
func (f *Forwarder) Apply(forwards []Forward, rules []Rule) (Changes, error) {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	var ch Changes
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ch, errors.New("the forwarder is closed")
	}
	cur := slices.Clone(f.active)
	ch.RulesChanged = !sameRules(f.rules, rules)
	f.mu.Unlock()

	matched := make([]bool, len(cur))
	next := make([]*active, len(forwards))
	for i, fw := range forwards {
		for j, a := range cur {
			if !matched[j] && a.fw == fw {
				next[i], matched[j] = a, true
				break
			}
		}
	}
	type retarget struct {
		a      *active
		before Forward
	}
	var retargets []retarget
	for i, fw := range forwards {
		if next[i] != nil || fw.Kind != Remote {
			continue
		}
		for j, a := range cur {
			if !matched[j] && a.fw.Kind == Remote && a.fw.Network == fw.Network && a.fw.Bind == fw.Bind {
				next[i], matched[j] = a, true
				retargets = append(retargets, retarget{a, a.fw})
				f.mu.Lock()
				a.fw = fw
				f.remotes[a.tag] = fw
				f.mu.Unlock()
				break
			}
		}
	}
	for j, a := range cur {
		if !matched[j] {
			f.stop(a)
			ch.Removed = append(ch.Removed, a.fw)
			f.log.Info("forward removed", "forward", a.fw.String())
		}
	}
	for _, r := range retargets {
		ch.Retargeted = append(ch.Retargeted, r.a.fw)
		f.log.Info("forward changed", "forward", r.a.fw.String(), "was", r.before.String())
	}
	var errs []error
	for i, fw := range forwards {
		if next[i] != nil {
			continue
		}
		a, err := f.start(fw)
		if err != nil {
			f.log.Error("cannot add forward", "forward", fw.String(), "err", err)
			errs = append(errs, err)
			continue
		}
		next[i] = a
		ch.Added = append(ch.Added, fw)
		f.log.Info("forward added", "forward", fw.String())
	}

	f.mu.Lock()
	f.active = slices.DeleteFunc(next, func(a *active) bool { return a == nil })
	if ch.RulesChanged {
		f.rules = slices.Clone(rules)
		ch.Rules = f.rules
	}
	f.mu.Unlock()
	if ch.RulesChanged {
		if len(rules) == 0 {
			f.log.Info("exit rules changed: none now")
		}
		for i, r := range rules {
			f.log.Info("exit rules changed", "n", i+1, "rule", r.String())
		}
	}
	return ch, errors.Join(errs...)
}

// SetAllow replaces the --allow policy, for streams that arrive from now
// on; nil allows every destination.
func (f *Forwarder) SetAllow(p *Policy) {
	f.mu.Lock()
	f.allow = p
	f.mu.Unlock()
}

// Forwards returns the forwards that run, in order.
func (f *Forwarder) Forwards() []Forward {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Forward, len(f.active))
	for i, a := range f.active {
		out[i] = a.fw
	}
	return out
}

// Rules returns the exit rules in force.
func (f *Forwarder) Rules() []Rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.rules)
}

func sameRules(a, b []Rule) bool {
	return slices.EqualFunc(a, b, func(x, y Rule) bool { return x.String() == y.String() })
}

// String names the changes for a log line, e.g. "added -L 127.0.0.1:8080
// -> db:5432; removed -R 127.0.0.1:9000 -> 127.0.0.1:80".
func (c Changes) String() string {
	if c.Empty() {
		return "no change"
	}
	var s string
	add := func(what string, fs []Forward) {
		if len(fs) == 0 {
			return
		}
		if s != "" {
			s += "; "
		}
		s += what
		for i, fw := range fs {
			if i > 0 {
				s += ","
			}
			s += " " + fw.String()
		}
	}
	add("added", c.Added)
	add("removed", c.Removed)
	add("changed", c.Retargeted)
	if c.RulesChanged {
		if s != "" {
			s += "; "
		}
		s += fmt.Sprintf("%d exit rules now", len(c.Rules))
	}
	return s
}
