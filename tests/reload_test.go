//go:build unix

package tests

import (
	"fmt"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SIGHUP adds a -L forward and removes a -R forward (closing its listener
// at the far end) while a transfer on another forward crosses a serial
// line: the transfer arrives intact (sha256 both ways), the session is
// the one it was. A changed setting that cannot apply live is named in a
// warning; a broken file changes nothing.
func TestReloadAddsAndRemovesForwardsDuringATransfer(t *testing.T) {
	skipWithoutPtys(t)
	_, pathA, pathB := startCable(t)
	srv, echo := transferServer(t), echoServer(t)
	kept, added, removedR := freePort(t), freePort(t), freePort(t)
	path := filepath.Join(t.TempDir(), "a.yaml")
	config := func(extra string) string {
		return fmt.Sprintf("comm: %s\nlocal:\n  - %d:127.0.0.1:%d\n", pathA, kept, srv) + extra
	}
	writeFile(t, path, config(fmt.Sprintf("remote:\n  - %d:127.0.0.1:%d\n", removedR, echo)))
	a := start(t, "link A", "link", "--config", path)
	b := start(t, "link B", "link", "--comm", pathB)
	a.waitLog("link up", 15*time.Second)
	b.waitLog("link up", 15*time.Second)
	waitListening(t, addr(kept), 5*time.Second)
	b.waitLog("listening for the far end's remote forward", 5*time.Second)
	echoOnce(t, addr(removedR))

	// 48 KiB each way takes about 5 s at 115200 baud.
	const size = 48 << 10
	done := make(chan error, 1)
	go func() {
		_, err := transferTimed(addr(kept), size, size, 7, 60*time.Second)
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)

	writeFile(t, path, config(fmt.Sprintf("  - %d:127.0.0.1:%d\ndead-timeout: 9s\n", added, echo)))
	a.signal(syscall.SIGHUP)
	a.waitLog(`msg="configuration reloaded"`, 5*time.Second)
	select {
	case err := <-done:
		t.Fatalf("the transfer ended before the reload was done (err %v): make it longer", err)
	default:
	}
	log := a.logText()
	assert.Contains(t, log, fmt.Sprintf(`msg="forward added" forward="-L 127.0.0.1:%d -> 127.0.0.1:%d"`, added, echo))
	assert.Contains(t, log, fmt.Sprintf(`msg="forward removed" forward="-R 127.0.0.1:%d -> 127.0.0.1:%d"`, removedR, echo))
	assert.Contains(t, log, `settings=dead-timeout`)
	assert.NotContains(t, log, fmt.Sprintf(`msg="forward removed" forward="-L 127.0.0.1:%d`, kept))
	b.waitLog("closed the listener of the far end's removed remote forward", 10*time.Second)
	a.waitLog("far end closed the listener of a removed remote forward", 10*time.Second)
	expectNotListening(t, addr(removedR), 5*time.Second)
	echoOnce(t, addr(added))

	require.NoError(t, <-done, "the transfer through the forward that stayed")

	// A file that does not load leaves everything as it was.
	writeFile(t, path, config("local-typo: 1\n"))
	a.signal(syscall.SIGHUP)
	a.waitLog(`msg="configuration not reloaded; the link runs on as it was"`, 5*time.Second)
	assert.Contains(t, a.logText(), `a.yaml:4: key \"local-typo\": unknown key`)
	echoOnce(t, addr(added))
	transferWithin(t, addr(kept), 4<<10, 4<<10, 8, 30*time.Second)

	assertSessionKept(t, a, b)
	assert.Equal(t, 2, a.countLog("SIGHUP: reading the configuration again"))
}

// echoOnce sends a few bytes through addr to an echo server and checks
// they come back.
func echoOnce(t *testing.T, address string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", address, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_, err = echoProbe(c, 'x')
	require.NoError(t, err, "echo through %s", address)
}
