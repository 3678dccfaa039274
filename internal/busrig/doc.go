// Package busrig is a test rig for half-duplex lines: two link ends, as
// the binary builds them with --half-duplex, over a virtual half-duplex
// cable (package cable: one bus, colliding bytes, each end hearing its
// own), with the transfers and echoes the tests and the bench time on it.
// It needs pseudo-terminals (Linux, macOS, the BSDs).
package busrig
