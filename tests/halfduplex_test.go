//go:build unix

package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSerialHalfDuplex: two links with --half-duplex on a half-duplex
// cable (one bus: bytes sent at once collide, each end hears its own) carry
// a transfer each way at once, intact, taking turns.
func TestSerialHalfDuplex(t *testing.T) {
	skipWithoutPtys(t)
	t.Parallel()
	r := newSerialRig(t, []string{"--half-duplex"}, "--half-duplex")
	const size = 48 << 10
	took := transferWithin(t, addr(r.port), size, size, 7, lineTimeFor(2*size, 0.4))
	total := 2 * float64(size) / took.Seconds()
	t.Logf("48 KiB each way at once over one bus in %v: %.0f bytes/s in all, %.0f%% of the line", took.Round(time.Millisecond), total, 100*total/lineRate)
	// The bench measures the targets; on a loaded test machine a late
	// wake-up looks like the end of a turn and the ends collide now and
	// then, so only a bus that does not work at all fails here.
	assert.Greater(t, total, 0.3*lineRate, "the two directions share the bus")
	assert.NotContains(t, r.a.logText()+r.b.logText(), "full duplex on a half-duplex line")
	assertSessionKept(t, r.a, r.b)
}

// TestHalfDuplexNeedsASerialLine: --half-duplex on TCP is refused with
// the reason.
func TestHalfDuplexNeedsASerialLine(t *testing.T) {
	code, out := run(t, 10*time.Second, "link", "--connect", "127.0.0.1:1", "--half-duplex")
	assert.NotEqual(t, 0, code)
	require.True(t, strings.Contains(out, "--half-duplex is for a serial line"), out)
}

// TestRS485NeedsADriverWithIt: --rs485 on a port whose driver has no
// RS-485 mode (a pseudo-terminal) stops at start with the reason.
func TestRS485NeedsADriverWithIt(t *testing.T) {
	skipWithoutPtys(t)
	_, pathA, _ := startCable(t)
	code, out := run(t, 15*time.Second, "link", "--comm", pathA, "--rs485", "--half-duplex")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "no RS-485 mode")
	code, out = run(t, 15*time.Second, "link", "--comm", pathA, "--rs485-delay-after", "1ms")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "need --rs485")
}
