//go:build unix

package tests

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSerialLinesLatencyAndRates runs two links with --dtr off --rts off
// --low-latency over a cable with a 16 ms USB latency timer: the flags are
// harmless on pseudo-terminals (which have no modem lines, and say so), a
// transfer crosses the latency timers intact, and status reports the lines
// and error counters as not available rather than as zeros.
func TestSerialLinesLatencyAndRates(t *testing.T) {
	skipWithoutPtys(t)
	t.Parallel()
	dir := controlDir(t)
	sock := filepath.Join(dir, "a.sock")
	r := newSerialRigArgs(t, []string{"--latency", "16"}, []string{"--dtr", "off", "--rts", "off", "--low-latency", "--control", sock}, []string{"--dtr", "on"})
	r.cable.waitLog("USB latency 16ms", 5*time.Second)
	r.a.waitLog("no modem-control lines (a pseudo-terminal?): DTR and RTS not set; HUPCL cleared", 5*time.Second)
	r.a.waitLog("--low-latency: latency_timer: not available", 5*time.Second)
	const size = 32 << 10
	transferWithin(t, addr(r.port), size, size, 5, lineTimeFor(size, 0.5))

	code, out := run(t, 10*time.Second, "status", "--control", sock)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "lines      not available: modem-control lines are not available on this device (a pseudo-terminal has none)\n")
	assert.Contains(t, out, "rx errors  not available on this device (no TIOCGICOUNT)\n")
	assertSessionKept(t, r.a, r.b)

	// --carrier on a pseudo-terminal: refused in one line at start-up.
	_, pathA, _ := startCable(t)
	args := []string{"link", "--comm", pathA, "--carrier", "dcd"}
	code, out = run(t, 10*time.Second, args...)
	oneLineError(t, code, out, "serial "+pathA+": --carrier dcd needs a device with modem-status lines; this one has none (a pseudo-terminal?)", args)
	args = []string{"link", "--comm", pathA, "--dtr", "low"}
	code, out = run(t, 10*time.Second, args...)
	oneLineError(t, code, out, `--dtr "low": want one of on, off`, args)
}

// TestSerialMismatchedRatesNeverConnect: the cable follows the rates the
// ends set, so links at different baud rates hear only garbage, as on a
// real line, and the cable says why.
func TestSerialMismatchedRatesNeverConnect(t *testing.T) {
	skipWithoutPtys(t)
	t.Parallel()
	cable, pathA, pathB := startCable(t)
	a := start(t, "link A", "link", "--comm", pathA, "--baud", "115200")
	b := start(t, "link B", "link", "--comm", pathB, "--baud", "57600")
	cable.waitLog("cable: B set 57600 baud", 10*time.Second)
	cable.waitLog("bytes arrive garbled", 10*time.Second)
	time.Sleep(4 * time.Second)
	assert.Zero(t, a.countLog(`msg="link up"`), "link A came up over mismatched rates")
	assert.Zero(t, b.countLog(`msg="link up"`), "link B came up over mismatched rates")
	assert.Contains(t, stopCable(t, cable), "at a rate the other end does not listen at")
}
