//go:build !linux

package serialport

// stableNames knows no stable device names outside Linux.
func stableNames() map[string]string { return nil }
