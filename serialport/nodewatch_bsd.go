//go:build darwin || freebsd || openbsd

package serialport

// nodeWatch is Linux only; elsewhere the port polls (pollInterval).
type nodeWatch struct{}

// startNodeWatch returns false: on macOS and the BSDs a blocked Read or
// Write wakes every pollInterval to check the device node.
func (p *Port) startNodeWatch() bool { return false }

// nodeGone returns nil: there is no watch to have found anything.
func (p *Port) nodeGone() error { return nil }

// stopNodeWatch does nothing: there is no watch.
func (p *Port) stopNodeWatch() {}
