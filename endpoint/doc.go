// Package endpoint is sockmux's composition root: from one Options value it
// builds one end of a link, driver → link → mux → forwarder, runs it, and
// shuts it down in order. It is the only place those layers are wired to
// each other; the command line, the benchmarks, the line simulator and the
// tests all build their ends here.
//
// The layers are made in an order that needs no setter: the mux first, its
// hooks (Notify, OnListen, OnUnlisten, OnSessionEnd) calling into the link
// and the forwarder made right after it, then the link over the mux, then
// the forwarder over the mux and the link's counters. No hook can fire
// before New returns: the mux sends nothing and hears nothing until Run
// starts the link.
//
// An Endpoint holds no package-level state, so a process may build many
// (one per peer); the control package reads an endpoint's Link, Mux and
// Driver (control.Source).
package endpoint
