//go:build unix

package tests

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/internal/testutil"
)

// Helpers for the serial (virtual cable) and pipe end-to-end tests.

// startCable runs "sockmux cable" between two new paths with the extra
// arguments and waits until both ends exist.
func startCable(t *testing.T, args ...string) (c *proc, pathA, pathB string) {
	t.Helper()
	dir := t.TempDir()
	pathA, pathB = filepath.Join(dir, "ttyA"), filepath.Join(dir, "ttyB")
	return startCableAt(t, "cable", pathA, pathB, args...), pathA, pathB
}

// startCableAt runs "sockmux cable" at the given paths.
func startCableAt(t *testing.T, name, pathA, pathB string, args ...string) *proc {
	t.Helper()
	c := start(t, name, append(append([]string{"cable", "--report-every", "1s"}, args...), pathA, pathB)...)
	c.waitLog(fmt.Sprintf("cable %s <-> %s up", pathA, pathB), 10*time.Second)
	return c
}

// serialRig is a virtual cable with a sockmux link on each end. A forwards
// its local port to the transfer server and its echo port to the echo
// server, both reached through B.
type serialRig struct {
	cable        *proc
	a, b         *proc
	pathA, pathB string
	port         int // on A: the transfer server, through the cable
	echo         int // on A: the echo server, through the cable
}

// newSerialRig starts a cable with cableArgs and the two links, and waits
// until the link is up at both ends.
func newSerialRig(t *testing.T, cableArgs []string, linkArgs ...string) *serialRig {
	t.Helper()
	return newSerialRigArgs(t, cableArgs, linkArgs, linkArgs)
}

// newSerialRigArgs is newSerialRig with other arguments for each link.
func newSerialRigArgs(t *testing.T, cableArgs, argsA, argsB []string) *serialRig {
	t.Helper()
	r := &serialRig{port: freePort(t), echo: freePort(t)}
	r.cable, r.pathA, r.pathB = startCable(t, cableArgs...)
	srv, echo := transferServer(t), echoServer(t)
	r.a = start(t, "link A", append([]string{"link", "--comm", r.pathA,
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", r.port, srv),
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", r.echo, echo)}, argsA...)...)
	r.b = start(t, "link B", append([]string{"link", "--comm", r.pathB}, argsB...)...)
	r.a.waitLog("link up", 15*time.Second)
	r.b.waitLog("link up", 15*time.Second)
	waitListening(t, addr(r.port), 5*time.Second)
	return r
}

// assertSessionKept checks that each link made exactly one session and
// never started another: whatever happened on the line, the streams were
// never at risk.
func assertSessionKept(t *testing.T, ps ...*proc) {
	t.Helper()
	for _, p := range ps {
		assert.Equal(t, 1, p.countLog(`msg="link up"`), "%s: sessions started", p.name)
		assert.Zero(t, p.countLog("new session"), "%s: the session was kept", p.name)
		assert.Zero(t, p.countLog("abandoning session"), "%s: the session was kept", p.name)
		assert.NotContains(t, p.logText(), "panic", p.name)
	}
}

// stopCable stops the cable and returns its closing summary, the line
// "cable closed: A→B ...".
func stopCable(t *testing.T, c *proc) string {
	t.Helper()
	c.signal(syscall.SIGTERM)
	assert.Equal(t, 0, c.wait(10*time.Second), "the cable exits cleanly")
	m := regexp.MustCompile(`cable closed: [^\n]*`).FindString(c.logText())
	require.NotEmpty(t, m, "the cable's closing summary")
	return m
}

// transferWithin runs transfer and fails the test if it fails or takes
// longer than d. It returns how long it took. Call it from the test's
// goroutine; elsewhere use transferTimed.
func transferWithin(t *testing.T, addr string, up, down int64, seed uint64, d time.Duration) time.Duration {
	t.Helper()
	took, err := transferTimed(addr, up, down, seed, d)
	require.NoError(t, err)
	return took
}

// transferTimed runs transfer with a time limit and returns how long it
// took.
func transferTimed(addr string, up, down int64, seed uint64, d time.Duration) (time.Duration, error) {
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- transfer(addr, up, down, seed) }()
	select {
	case err := <-done:
		if err != nil {
			return time.Since(start), fmt.Errorf("transfer of %d bytes up and %d down through %s: %w", up, down, addr, err)
		}
		return time.Since(start), nil
	case <-time.After(d):
		return d, fmt.Errorf("transfer of %d bytes up and %d down through %s did not finish in %v", up, down, addr, d)
	}
}

// echoServer echoes every byte it reads, on each connection.
func echoServer(t *testing.T) int {
	t.Helper()
	return testutil.Port(testutil.ServeLoopback(t, testutil.Echo))
}

// holdServer accepts connections, reads and discards what they send and
// never answers: a stream to it stays open until something ends it.
func holdServer(t *testing.T) int {
	t.Helper()
	return testutil.Port(testutil.ServeLoopback(t, hold))
}

// hold reads and discards what c sends until the client is done, then
// closes c.
func hold(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(io.Discard, c)
}

// echoProbe sends one byte on c and returns how long the echo took.
func echoProbe(c net.Conn, b byte) (time.Duration, error) {
	var buf [1]byte
	start := time.Now()
	if _, err := c.Write([]byte{b}); err != nil {
		return 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return 0, err
	}
	if buf[0] != b {
		return 0, fmt.Errorf("echo: sent %#x, got %#x", b, buf[0])
	}
	return time.Since(start), nil
}

// percentile returns the p-th percentile (0 < p <= 100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(len(s)-1, i))]
}

// oneLineError checks the output of a sockmux that was expected to fail at
// start-up: exit code 1 and a single line that contains want.
func oneLineError(t *testing.T, code int, out, want string, args []string) {
	t.Helper()
	assert.Equal(t, 1, code, "%v: exit code; output:\n%s", args, out)
	assert.Equal(t, 1, strings.Count(strings.TrimRight(out, "\n"), "\n")+1, "%v: one line; output:\n%s", args, out)
	assert.True(t, strings.HasPrefix(out, "sockmux: "), "%v: output:\n%s", args, out)
	assert.Contains(t, out, want, "%v", args)
	assert.NotContains(t, out, "panic", "%v", args)
}

// waitCount waits until the log holds at least n occurrences of s.
func (p *proc) waitCount(s string, n int, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for p.countLog(s) < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %d of %q in the log after %v, want %d", p.name, p.countLog(s), s, timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// mkfifos creates FIFOs named names in a new temporary directory and
// returns their paths.
func mkfifos(t *testing.T, names ...string) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for _, n := range names {
		p := filepath.Join(dir, n)
		require.NoError(t, syscall.Mkfifo(p, 0o600))
		paths = append(paths, p)
	}
	return paths
}

// fileExists reports whether path exists (without following a symlink).
func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// cpuTime returns the CPU time the process has used so far (Linux), or
// false where /proc does not tell.
func (p *proc) cpuTime() (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, false
	}
	var ut, st int64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, false
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, false
	}
	const ticksPerSecond = 100 // USER_HZ on every Linux platform
	return time.Duration(ut+st) * time.Second / ticksPerSecond, true
}

// assertIdleWhile checks that p uses little CPU during d: waiting is not
// spinning.
func assertIdleWhile(t *testing.T, p *proc, d time.Duration) {
	t.Helper()
	before, ok := p.cpuTime()
	time.Sleep(d)
	after, ok2 := p.cpuTime()
	if !ok || !ok2 {
		return
	}
	t.Logf("%s used %v of CPU in %v of waiting", p.name, after-before, d)
	assert.Less(t, after-before, d/5, "%s is waiting, not spinning", p.name)
}
