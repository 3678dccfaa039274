package mux

import "testing"

// Every state and event: the transition table as a whole.
func TestStreamStateTransitions(t *testing.T) {
	type tr struct {
		from streamState
		ev   streamEvent
	}
	want := map[tr]streamState{
		{stateOpen, evLocalFin}:      stateLocalFin,
		{stateOpen, evRemoteFin}:     stateRemoteFin,
		{stateOpen, evReset}:         stateReset,
		{stateLocalFin, evRemoteFin}: stateFinished,
		{stateLocalFin, evReset}:     stateReset,
		{stateRemoteFin, evLocalFin}: stateFinished,
		{stateRemoteFin, evReset}:    stateReset,
		{stateFinished, evReset}:     stateReset,
	}
	for st := stateOpen; st <= stateReset; st++ {
		for ev := evLocalFin; ev <= evReset; ev++ {
			to, ok := st.next(ev)
			w, legal := want[tr{st, ev}]
			if !legal {
				w = st
			}
			if to != w || ok != legal {
				t.Errorf("%v on event %d: got %v (applied %v), want %v (applied %v)", st, ev, to, ok, w, legal)
			}
		}
	}
	for st, w := range map[streamState][2]bool{
		stateOpen: {false, false}, stateLocalFin: {true, false}, stateRemoteFin: {false, true},
		stateFinished: {true, true}, stateReset: {false, false},
	} {
		if st.localDone() != w[0] || st.remoteDone() != w[1] {
			t.Errorf("%v: localDone %v remoteDone %v, want %v", st, st.localDone(), st.remoteDone(), w)
		}
	}
}

// apply keeps the scheduler's remoteFin in step with the state.
func TestStreamApplyMirrorsRemoteFin(t *testing.T) {
	s := &Stream{}
	for _, step := range []struct {
		ev        streamEvent
		applied   bool
		state     streamState
		remoteFin bool
	}{
		{evRemoteFin, true, stateRemoteFin, true},
		{evRemoteFin, false, stateRemoteFin, true},
		{evLocalFin, true, stateFinished, true},
		{evReset, true, stateReset, false},
		{evLocalFin, false, stateReset, false},
	} {
		if got := s.apply(step.ev); got != step.applied || s.state != step.state || s.remoteFin != step.remoteFin {
			t.Fatalf("event %d: applied %v, state %v, remoteFin %v; want %v, %v, %v",
				step.ev, got, s.state, s.remoteFin, step.applied, step.state, step.remoteFin)
		}
	}
}

// An inbound stream the application holds undecided stays counted after
// it leaves the table, until the application decides; a decision taken
// before Mux.AcceptStream handed it out is not undone.
func TestHoldState(t *testing.T) {
	m := &Mux{}
	s := &Stream{}
	m.orphan(s)
	if s.hold != holdQueued || m.zombies != 0 {
		t.Fatalf("a queued stream left the table: hold %d, zombies %d", s.hold, m.zombies)
	}
	m.hold(s)
	m.orphan(s)
	if s.hold != holdZombie || m.zombies != 1 {
		t.Fatalf("held, then gone: hold %d, zombies %d", s.hold, m.zombies)
	}
	m.decide(s)
	m.decide(s)
	if s.hold != holdDecided || m.zombies != 0 {
		t.Fatalf("decided: hold %d, zombies %d", s.hold, m.zombies)
	}
	m.hold(s)
	m.orphan(s)
	if s.hold != holdDecided || m.zombies != 0 {
		t.Fatalf("decided before it was handed out: hold %d, zombies %d", s.hold, m.zombies)
	}
}
