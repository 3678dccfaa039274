package mux

// A stream's life in two small state machines, each changed in one
// place: streamState for its two directions (what FINs and RESETs did),
// holdState for the application's decision on an inbound stream (which
// counts against MaxStreams until it is taken). Both are guarded by m.mu.

// streamState is where a stream's two directions are.
type streamState uint8

const (
	stateOpen      streamState = iota // both directions carry data
	stateLocalFin                     // we sent FIN (CloseWrite); the far end may still send
	stateRemoteFin                    // the far end sent FIN; we may still send
	stateFinished                     // both FINs: a clean end
	stateReset                        // reset by either end, or the session ended; Stream.err says why
)

func (st streamState) String() string {
	switch st {
	case stateOpen:
		return "open"
	case stateLocalFin:
		return "local FIN"
	case stateRemoteFin:
		return "remote FIN"
	case stateFinished:
		return "finished"
	case stateReset:
		return "reset"
	}
	return "invalid"
}

// streamEvent is what moves a streamState.
type streamEvent uint8

const (
	evLocalFin  streamEvent = iota // this end half-closed
	evRemoteFin                    // a FIN arrived
	evReset                        // reset here or by the far end, or the session ended
)

// next is the transition table: the state after ev, and whether ev
// applies in st. An event that does not apply (a second FIN the same
// way, anything after a reset) leaves the state as it is.
func (st streamState) next(ev streamEvent) (streamState, bool) {
	switch {
	case st == stateReset:
		return st, false // terminal
	case ev == evReset:
		return stateReset, true
	case ev == evLocalFin && st == stateOpen:
		return stateLocalFin, true
	case ev == evLocalFin && st == stateRemoteFin:
		return stateFinished, true
	case ev == evRemoteFin && st == stateOpen:
		return stateRemoteFin, true
	case ev == evRemoteFin && st == stateLocalFin:
		return stateFinished, true
	}
	return st, false
}

// localDone reports whether we sent FIN (or can send nothing more).
func (st streamState) localDone() bool { return st == stateLocalFin || st == stateFinished }

// remoteDone reports whether the far end sent FIN.
func (st streamState) remoteDone() bool { return st == stateRemoteFin || st == stateFinished }

// apply moves s's state by ev, under m.mu, and reports whether ev
// applied. remoteFin mirrors the state for the scheduler (sched.go).
func (s *Stream) apply(ev streamEvent) bool {
	to, ok := s.state.next(ev)
	s.state = to
	s.remoteFin = to.remoteDone()
	return ok
}

// holdState is the application's part in an inbound stream.
type holdState uint8

const (
	holdQueued  holdState = iota // not handed to the application (or outbound)
	holdHeld                     // Mux.AcceptStream returned it; not yet accepted, reset or closed
	holdZombie                   // held and undecided, but gone from the stream table: still counted
	holdDecided                  // the application accepted, reset or closed it
)

// hold moves s to holdHeld when Mux.AcceptStream hands it out, under m.mu.
func (m *Mux) hold(s *Stream) {
	if s.hold == holdQueued {
		s.hold = holdHeld
	}
}

// decide records that the application accepted, reset or closed s, under
// m.mu.
func (m *Mux) decide(s *Stream) {
	if s.hold == holdZombie {
		m.zombies--
	}
	s.hold = holdDecided
}

// orphan notes that s left the stream table, under m.mu: held and
// undecided, it stays counted against MaxStreams until decided.
func (m *Mux) orphan(s *Stream) {
	if s.hold == holdHeld {
		s.hold = holdZombie
		m.zombies++
	}
}
