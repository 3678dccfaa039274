//go:build unix

package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A hub of serial ports: sockmux link --comm A --comm B, each port a peer.
// The cables here run unpaced, the links at 921600 baud.

// portPeer is the part of `sockmux status --json` the tests read of a
// hub's port.
type portPeer struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	Transport string `json:"transport"`
	BytesIn   uint64 `json:"bytes_in"`
	Sessions  uint64 `json:"sessions"`
}

func queryPorts(t *testing.T, sock string) map[string]portPeer {
	t.Helper()
	code, out := run(t, 10*time.Second, "status", "--json", "--control", sock)
	require.Equal(t, 0, code, out)
	var st struct {
		Hub   bool       `json:"hub"`
		Peers []portPeer `json:"peers"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	require.True(t, st.Hub, out)
	m := map[string]portPeer{}
	for _, p := range st.Peers {
		m[p.Name] = p
	}
	return m
}

// One process drives three ports: two cables' ends (one named
// lab-b=PATH) and a third whose device is missing at start, which is
// logged and waited for. Forwards reach each far end by name (-L @PEER,
// -D HOST.PEER.sockmux) and each far end's -R listens in the hub; status
// lists the ports and drills into one; metrics carry the peer label. A
// connection for the missing port waits --link-wait and is turned away.
// Killing one far end mid-transfer leaves the other's transfer whole and
// its session kept; the device that appears late becomes a working peer.
func TestCommHubSeveralPorts(t *testing.T) {
	dir := t.TempDir()
	path := func(n string) string { return filepath.Join(dir, n) }
	startCableAt(t, "cable A", path("ttyA1"), path("ttyA2"), "--baud", "0")
	startCableAt(t, "cable B", path("ttyB1"), path("ttyB2"), "--baud", "0")
	srv := transferServer(t)
	web := webServer(t, "web")
	sock := filepath.Join(controlDir(t), "hub.sock")
	metrics := addr(freePort(t))
	dport := freePort(t)
	lA, lB, lC, rA, rB := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	baud := []string{"--baud", "921600"}
	hub := start(t, "hub", append([]string{"link", "--comm", path("ttyA1"), "--comm", "lab-b=" + path("ttyB1"), "--comm", path("ttyC1"),
		"--control", sock, "--metrics", metrics, "--link-wait", "1s", "-D", fmt.Sprint(dport),
		"-L", fmt.Sprintf("%d:127.0.0.1:%d@ttyA1", lA, srv),
		"-L", fmt.Sprintf("%d:127.0.0.1:%d@LAB-B", lB, srv),
		"-L", fmt.Sprintf("%d:127.0.0.1:%d@ttyC1", lC, srv)}, baud...)...)
	hub.waitLog("hub running", 10*time.Second)
	hub.waitLog("serial "+path("ttyC1")+" not available: no such device; waiting", 5*time.Second)
	farA := start(t, "far A", append([]string{"link", "--comm", path("ttyA2"), "--control", filepath.Join(controlDir(t), "a.sock"),
		"-R", fmt.Sprintf("%d:127.0.0.1:%d", rA, srv)}, baud...)...)
	farB := start(t, "far B", append([]string{"link", "--comm", path("ttyB2"), "--control", filepath.Join(controlDir(t), "b.sock"),
		"-R", fmt.Sprintf("%d:127.0.0.1:%d", rB, srv)}, baud...)...)
	farA.waitLog("link up", 15*time.Second)
	farB.waitLog("link up", 15*time.Second)
	waitListening(t, addr(rA), 10*time.Second)
	waitListening(t, addr(rB), 10*time.Second)

	// Both ways on both ports at once.
	errs := make(chan error, 4)
	for i, port := range []int{lA, lB, rA, rB} {
		go func() { errs <- transfer(addr(port), 128<<10, 128<<10, uint64(i+1)) }()
	}
	for range 4 {
		assert.NoError(t, <-errs)
	}
	// -D reaches a host at a port's far end by HOST.PEER.sockmux.
	wport := web.Listener.Addr().(*net.TCPAddr).Port
	code, body := get(t, socksClient(t, addr(dport)), fmt.Sprintf("http://localhost.lab-b.sockmux:%d/x", wport))
	assert.Equal(t, 200, code)
	assert.Equal(t, "web: GET /x ", body)

	// The missing port's forward waits --link-wait, then turns the
	// client away; the others are untouched.
	c, err := net.Dial("tcp", addr(lC))
	require.NoError(t, err)
	began := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	c.Close()
	assert.Error(t, err)
	assert.GreaterOrEqual(t, time.Since(began), 900*time.Millisecond)
	hub.waitLog("connection turned away", 5*time.Second)

	st := queryPorts(t, sock)
	require.Len(t, st, 3, "%v", st)
	for _, n := range []string{"ttyA1", "lab-b"} {
		assert.Equal(t, "up", st[n].State, n)
		assert.NotZero(t, st[n].BytesIn, n)
		assert.Contains(t, st[n].Transport, "serial "+dir, n)
	}
	assert.NotEqual(t, "up", st["ttyC1"].State)
	code, out := run(t, 10*time.Second, "status", "--control", sock)
	require.Equal(t, 0, code, out)
	for _, want := range []string{"sockmux hub", "ports", "serial ports", "2 up of 3", "PEER", "ttyA1", "lab-b", "ttyC1"} {
		assert.Contains(t, out, want)
	}
	code, out = run(t, 10*time.Second, "status", "--control", sock, "LAB-B")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "921600 baud 8N1")
	assert.Contains(t, out, "/lab-b")
	code, out = run(t, 10*time.Second, "status", "--control", sock, "nobody")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, `no peer "nobody"`)
	resp, err := http.Get("http://" + metrics + "/metrics")
	require.NoError(t, err)
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`sockmux_link_up{name="default",peer="ttyA1"} 1`, `sockmux_link_up{name="default",peer="lab-b"} 1`, `sockmux_link_up{name="default",peer="ttyC1"} 0`} {
		assert.Contains(t, string(m), want)
	}

	// Far B killed in the middle of A's transfer: A's bytes arrive whole,
	// A's session is kept.
	long := make(chan error, 2)
	go func() { long <- transfer(addr(lA), 256<<10, 256<<10, 21) }()
	go func() { long <- transfer(addr(rA), 256<<10, 256<<10, 22) }()
	bDone := make(chan error, 1)
	go func() { bDone <- transfer(addr(lB), 4<<20, 4<<20, 23) }()
	time.Sleep(500 * time.Millisecond)
	farB.signal(syscall.SIGKILL)
	assert.NoError(t, <-long)
	assert.NoError(t, <-long)
	assertSessionKept(t, farA)
	st = queryPorts(t, sock)
	assert.Equal(t, uint64(1), st["ttyA1"].Sessions)
	// B's far end back: a new session (B's old streams end), and it
	// carries again.
	farB2 := start(t, "far B again", append([]string{"link", "--comm", path("ttyB2"), "--control", filepath.Join(controlDir(t), "b2.sock")}, baud...)...)
	farB2.waitLog("link up", 20*time.Second)
	select {
	case err := <-bDone:
		assert.Error(t, err, "B's stream of the old session ends")
	case <-time.After(20 * time.Second):
		t.Error("B's stream of the old session never ended")
	}
	assert.NoError(t, transfer(addr(lB), 64<<10, 64<<10, 24))

	// The missing device plugged in late: its peer comes up and carries.
	startCableAt(t, "cable C", path("ttyC1"), path("ttyC2"), "--baud", "0")
	farC := start(t, "far C", append([]string{"link", "--comm", path("ttyC2"), "--control", filepath.Join(controlDir(t), "c.sock")}, baud...)...)
	farC.waitLog("link up", 20*time.Second)
	hub.waitLog("serial "+path("ttyC1")+" opened", 5*time.Second)
	assert.NoError(t, transfer(addr(lC), 64<<10, 64<<10, 25))
	assert.NoError(t, transfer(addr(lA), 64<<10, 64<<10, 26))
	assertSessionKept(t, farA)
	assert.NotContains(t, hub.logText(), "panic")
}

// --comm-glob picks up ports as they appear: a directory of links to
// pseudo-terminals, a new link made while the hub runs becomes a peer
// named after it (made a valid name), reached by name; a path that is not
// a serial device is left out with the reason; a port given by --comm too
// is not taken twice.
func TestCommHubGlob(t *testing.T) {
	dir := t.TempDir()
	byID := filepath.Join(dir, "by-id")
	require.NoError(t, os.Mkdir(byID, 0o755))
	path := func(n string) string { return filepath.Join(dir, n) }
	for _, n := range []string{"A", "B", "C"} {
		startCableAt(t, "cable "+n, path("tty"+n+"1"), path("tty"+n+"2"), "--baud", "0")
	}
	require.NoError(t, os.Symlink(path("ttyA1"), filepath.Join(byID, "usb-FTDI_FT232R_A10K3ZP-if00-port0")))
	require.NoError(t, os.Symlink(path("ttyC1"), filepath.Join(byID, "same-as-comm")))
	require.NoError(t, os.WriteFile(filepath.Join(byID, "notes.txt"), []byte("not a port"), 0o600))
	srv := transferServer(t)
	sock := filepath.Join(controlDir(t), "hub.sock")
	lA, lB, lC := freePort(t), freePort(t), freePort(t)
	baud := []string{"--baud", "921600"}
	// -L ...@new-adapter-1 names no port at start: with a glob it waits
	// for a port of that name.
	hub := start(t, "hub", append([]string{"link", "--comm-glob", filepath.Join(byID, "*"), "--comm", "cee=" + path("ttyC1"), "--control", sock,
		"-L", fmt.Sprintf("%d:127.0.0.1:%d@usb-FTDI_FT232R_A10K3ZP-if00-port0", lA, srv),
		"-L", fmt.Sprintf("%d:127.0.0.1:%d@new-adapter-1", lB, srv),
		"-L", fmt.Sprintf("%d:127.0.0.1:%d@cee", lC, srv)}, baud...)...)
	hub.waitLog("port found: a new peer", 10*time.Second)
	for _, n := range []string{"A", "C"} {
		start(t, "far "+n, append([]string{"link", "--comm", path("tty" + n + "2"), "--control", filepath.Join(controlDir(t), n+".sock")}, baud...)...).
			waitLog("link up", 15*time.Second)
	}
	waitListening(t, addr(lA), 5*time.Second)
	assert.NoError(t, transfer(addr(lA), 64<<10, 64<<10, 1))
	assert.NoError(t, transfer(addr(lC), 64<<10, 64<<10, 2))
	hub.waitLog("port left out", 5*time.Second)
	assert.Contains(t, hub.logText(), "notes.txt")
	_, err := net.Dial("tcp", addr(lB))
	assert.Error(t, err, "no port new-adapter-1 yet: its forward does not listen")

	// A new adapter appears: a link whose name needs sanitizing.
	require.NoError(t, os.Symlink(path("ttyB1"), filepath.Join(byID, "new adapter:1")))
	hub.waitLog(`peer=new-adapter-1`, 10*time.Second)
	start(t, "far B", append([]string{"link", "--comm", path("ttyB2"), "--control", filepath.Join(controlDir(t), "b.sock")}, baud...)...).
		waitLog("link up", 15*time.Second)
	waitListening(t, addr(lB), 5*time.Second)
	assert.NoError(t, transfer(addr(lB), 64<<10, 64<<10, 3))
	st := queryPorts(t, sock)
	for _, n := range []string{"usb-FTDI_FT232R_A10K3ZP-if00-port0", "new-adapter-1", "cee"} {
		assert.Equal(t, "up", st[n].State, "%s: %v", n, st)
	}
	assert.NotContains(t, st, "same-as-comm", "the same device is not taken twice")
	assert.Len(t, st, 3)
	assert.NoError(t, transfer(addr(lA), 16<<10, 16<<10, 4))
	assert.False(t, strings.Contains(hub.logText(), "panic"))
}

// --baud auto runs on each port of a hub alone: both climb past the
// start rate, and a port's status shows its rate now.
func TestCommHubAutoBaud(t *testing.T) {
	dir := t.TempDir()
	path := func(n string) string { return filepath.Join(dir, n) }
	for _, n := range []string{"A", "B"} {
		startCableAt(t, "cable "+n, path("tty"+n+"1"), path("tty"+n+"2"), "--max-baud", "921600")
	}
	sock := filepath.Join(controlDir(t), "hub.sock")
	hub := start(t, "hub", "link", "--comm", path("ttyA1"), "--comm", path("ttyB1"), "--baud", "auto", "--control", sock)
	for _, n := range []string{"A", "B"} {
		start(t, "far "+n, "link", "--comm", path("tty"+n+"2"), "--baud", "auto", "--control", filepath.Join(controlDir(t), n+".sock"))
	}
	require.Eventually(t, func() bool {
		for _, n := range []string{"ttyA1", "ttyB1"} {
			code, out := run(t, 10*time.Second, "status", "--control", sock, n)
			if code != 0 || !strings.Contains(out, "921600 baud") || !strings.Contains(out, "(auto:") {
				return false
			}
		}
		return true
	}, 60*time.Second, time.Second, "%s", hub.logText())
}
