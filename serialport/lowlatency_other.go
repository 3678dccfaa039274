//go:build !linux

package serialport

import "runtime"

// setLowLatency does nothing: the latency timer and ASYNC_LOW_LATENCY are
// Linux's. On Windows the FTDI driver's latency timer is in the port's
// Device Manager properties (Advanced: Latency Timer).
func (p *Port) setLowLatency() []string {
	return []string{"--low-latency: not available on " + runtime.GOOS + " (Linux only)"}
}
