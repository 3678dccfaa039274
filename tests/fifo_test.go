//go:build unix

package tests

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The FIFO tests run two "sockmux link" processes on one host joined by
// two real FIFOs made with mkfifo: side A writes a2b and reads b2a, side B
// the opposite.

func skipWithoutFIFOs(t *testing.T) {
	t.Helper()
}

// fifoSide is the arguments of one side of a FIFO pair.
func fifoSide(in, out string, extra ...string) []string {
	return append([]string{"link", "--commin", in, "--commout", out}, extra...)
}

// fifoPair makes the two FIFOs and starts side A, then side B, with the
// extra arguments, and waits for the link.
func fifoPair(t *testing.T, aArgs, bArgs []string) (a, b *proc, a2b, b2a string) {
	t.Helper()
	f := mkfifos(t, "a2b", "b2a")
	a2b, b2a = f[0], f[1]
	a = start(t, "side A", fifoSide(b2a, a2b, aArgs...)...)
	b = start(t, "side B", fifoSide(a2b, b2a, bArgs...)...)
	a.waitLog("link up", 10*time.Second)
	b.waitLog("link up", 10*time.Second)
	return a, b, a2b, b2a
}

func fwd(port int, dest int) string { return fmt.Sprintf("%d:127.0.0.1:%d", port, dest) }

func TestFIFOTransfer10MiBEachWay(t *testing.T) {
	skipWithoutFIFOs(t)
	t.Parallel()
	srv := transferServer(t)
	lport, rport := freePort(t), freePort(t)
	a, b, _, _ := fifoPair(t, []string{"-L", fwd(lport, srv)}, []string{"-R", fwd(rport, srv)})
	b.waitLog("far end listens for our remote forward", 10*time.Second)
	waitListening(t, addr(rport), 10*time.Second)
	const size = 10 << 20
	start := time.Now()
	var wg sync.WaitGroup
	for i, port := range []int{lport, rport} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := transferTimed(addr(port), size, size, uint64(100+i), 2*time.Minute)
			assert.NoError(t, err, "through port %d", port)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("2 streams of 10 MiB each way through the FIFO pair in %v: %.1f MiB/s each way",
		took.Round(time.Millisecond), 2*float64(size)/(1<<20)/took.Seconds())
	assertSessionKept(t, a, b)
}

func TestFIFOFiftyConcurrentStreams(t *testing.T) {
	skipWithoutFIFOs(t)
	t.Parallel()
	srv := transferServer(t)
	lport := freePort(t)
	a, b, _, _ := fifoPair(t, []string{"-L", fwd(lport, srv)}, nil)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := int64(64<<10 + i*8<<10)
			_, err := transferTimed(addr(lport), size, size/2, uint64(200+i), time.Minute)
			assert.NoError(t, err, "stream %d", i)
		}()
	}
	wg.Wait()
	assertSessionKept(t, a, b)
}

// TestFIFORoleOrders starts either side first, with the forward on either
// side: the side that comes first waits for the other.
func TestFIFORoleOrders(t *testing.T) {
	skipWithoutFIFOs(t)
	t.Parallel()
	for _, tc := range []struct {
		name        string
		bFirst      bool // side B (reads a2b) starts first
		forwardOnB  bool // -L on side B instead of A
		missingFIFO bool // neither FIFO exists: the sides create them
	}{
		{name: "A first, -L on A"},
		{name: "A first, -L on B", forwardOnB: true},
		{name: "B first, -L on A", bFirst: true},
		{name: "B first, -L on B", bFirst: true, forwardOnB: true},
		{name: "A first, FIFOs created by sockmux", missingFIFO: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := transferServer(t)
			lport := freePort(t)
			var a2b, b2a string
			if tc.missingFIFO {
				dir := t.TempDir()
				a2b, b2a = filepath.Join(dir, "a2b"), filepath.Join(dir, "b2a")
			} else {
				f := mkfifos(t, "a2b", "b2a")
				a2b, b2a = f[0], f[1]
			}
			var aExtra, bExtra []string
			if tc.forwardOnB {
				bExtra = []string{"-L", fwd(lport, srv)}
			} else {
				aExtra = []string{"-L", fwd(lport, srv)}
			}
			sides := []struct {
				name    string
				args    []string
				in, out string
			}{{"side A", fifoSide(b2a, a2b, aExtra...), b2a, a2b}, {"side B", fifoSide(a2b, b2a, bExtra...), a2b, b2a}}
			if tc.bFirst {
				sides[0], sides[1] = sides[1], sides[0]
			}
			first := start(t, sides[0].name, sides[0].args...)
			// The first side waits for its peer, quietly and without
			// burning CPU, for as long as it takes.
			first.waitLog("pipe: waiting for the peer to open", 5*time.Second)
			assertIdleWhile(t, first, 1500*time.Millisecond)
			assert.Zero(t, first.countLog("transport lost"), "waiting is not failing")
			assert.Zero(t, first.countLog("link up"))
			if tc.missingFIFO {
				fi, err := os.Stat(a2b)
				if assert.NoError(t, err) {
					assert.Equal(t, os.ModeNamedPipe|0o600, fi.Mode(), "created as a FIFO, mode 0600")
				}
			}
			second := start(t, sides[1].name, sides[1].args...)
			first.waitLog("link up", 10*time.Second)
			second.waitLog("link up", 10*time.Second)
			waitListening(t, addr(lport), 5*time.Second)
			transferWithin(t, addr(lport), 1<<20, 1<<20, 300, time.Minute)
			assertSessionKept(t, first, second)
		})
	}
}

// TestFIFOPeerKilledAndRestarted kills one side with SIGKILL in the middle
// of transfers and starts it again: the survivor's clients see their
// connections end (not hang), and new connections work.
func TestFIFOPeerKilledAndRestarted(t *testing.T) {
	skipWithoutFIFOs(t)
	t.Parallel()
	for _, victim := range []string{"side A", "side B"} {
		t.Run("kill "+victim, func(t *testing.T) {
			t.Parallel()
			srv, hold := transferServer(t), holdServer(t)
			lport, hport := freePort(t), freePort(t)
			f := mkfifos(t, "a2b", "b2a")
			a2b, b2a := f[0], f[1]
			// The survivor has the forwards: its clients outlive the victim.
			survivorArgs := []string{"-L", fwd(lport, srv), "-L", fwd(hport, hold)}
			aArgs, bArgs := survivorArgs, []string(nil)
			if victim == "side A" {
				aArgs, bArgs = bArgs, aArgs
			}
			a := start(t, "side A", fifoSide(b2a, a2b, aArgs...)...)
			b := start(t, "side B", fifoSide(a2b, b2a, bArgs...)...)
			survivor, dead := a, b
			victimArgs := fifoSide(a2b, b2a, bArgs...)
			if victim == "side A" {
				survivor, dead = b, a
				victimArgs = fifoSide(b2a, a2b, aArgs...)
			}
			survivor.waitLog("link up", 10*time.Second)
			dead.waitLog("link up", 10*time.Second)

			// An idle stream and a busy one.
			idle := idleStream(t, addr(hport))
			busy := make(chan error, 1)
			go func() { busy <- transfer(addr(lport), 200<<20, 200<<20, 400) }()
			time.Sleep(500 * time.Millisecond)

			dead.signal(syscall.SIGKILL)
			assert.Equal(t, -int(syscall.SIGKILL), dead.wait(5*time.Second))
			survivor.waitLog("transport lost", 5*time.Second)
			assert.False(t, survivor.exited(), "the survivor keeps running")
			time.Sleep(time.Second)
			restarted := time.Now()
			again := start(t, victim+" again", victimArgs...)
			again.waitLog("link up", 10*time.Second)
			survivor.waitLog("peer started a new session", 10*time.Second)

			// The old clients are told: their connections end.
			select {
			case err := <-busy:
				// Reset, or closed: the kernel reports a reset to one of
				// the client's two goroutines, the other may see the end.
				require.Error(t, err, "a transfer cut by the peer's death cannot have completed")
				t.Logf("the busy client saw %v, %v after the restart", err, time.Since(restarted).Round(time.Millisecond))
			case <-time.After(10 * time.Second):
				t.Fatal("the busy client's connection hangs after the peer restarted")
			}
			_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := idle.Read(make([]byte, 1))
			require.Error(t, err)
			assert.ErrorIs(t, err, syscall.ECONNRESET, "the idle connection is reset, not left hanging or closed as if complete")
			// New connections work.
			transferWithin(t, addr(lport), 4<<20, 4<<20, 401, time.Minute)
			assert.Equal(t, 1, survivor.countLog("peer started a new session"))
		})
	}
}

// TestFIFOPeerPausedResumes stops one side (SIGSTOP) in the middle of a
// transfer for a few seconds: after SIGCONT the transfer completes intact
// on the same session.
func TestFIFOPeerPausedResumes(t *testing.T) {
	skipWithoutFIFOs(t)
	t.Parallel()
	for _, tc := range []struct {
		name       string
		pause      time.Duration
		linkArgs   []string
		reopenWant bool // the pause outlasts the dead timeout
	}{
		{name: "shorter than the dead timeout", pause: 3 * time.Second},
		{name: "longer than the dead timeout", pause: 4 * time.Second,
			linkArgs: []string{"--keepalive", "500ms", "--dead-timeout", "2s"}, reopenWant: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := transferServer(t)
			lport := freePort(t)
			a, b, _, _ := fifoPair(t, append([]string{"-L", fwd(lport, srv)}, tc.linkArgs...), tc.linkArgs)
			const size = 256 << 20
			done := make(chan error, 1)
			go func() { done <- transfer(addr(lport), size, size, 500) }()
			time.Sleep(300 * time.Millisecond)
			select {
			case err := <-done:
				t.Fatalf("the transfer ended before the pause: %v", err)
			default:
			}
			b.signal(syscall.SIGSTOP)
			time.Sleep(tc.pause)
			b.signal(syscall.SIGCONT)
			select {
			case err := <-done:
				require.NoError(t, err, "transfer across the pause")
			case <-time.After(2 * time.Minute):
				t.Fatal("transfer did not finish after SIGCONT")
			}
			assertSessionKept(t, a, b)
			if tc.reopenWant {
				assert.Contains(t, a.logText(), "peer silent for", "A gave up on the silent channel")
				assert.GreaterOrEqual(t, a.countLog("link resumed"), 1, "and resumed the session")
			} else {
				assert.Zero(t, a.countLog("transport lost"), "a pause is not a break")
				assert.Zero(t, b.countLog("transport lost"), "a pause is not a break")
			}
		})
	}
}

func TestFIFOBadInput(t *testing.T) {
	skipWithoutFIFOs(t)
	t.Parallel()
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	fifo := mkfifos(t, "fifo")[0]
	require.NoError(t, os.WriteFile(p("file"), []byte("x"), 0o600))
	require.NoError(t, os.Mkdir(p("dir"), 0o755))
	require.NoError(t, os.Link(fifo, p("fifo-again")))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--commin", p("file"), "--commout", fifo}, "pipe: commin " + p("file") + " is a regular file; want a FIFO (named pipe) or a character device"},
		{[]string{"--commin", fifo, "--commout", p("dir")}, "pipe: commout " + p("dir") + " is a directory; want a FIFO (named pipe) or a character device"},
		{[]string{"--commin", fifo, "--commout", fifo}, "pipe: commin and commout are the same file " + fifo},
		{[]string{"--commin", fifo, "--commout", p("fifo-again")}, "are the same file"},
		{[]string{"--commin", p("nodir/in"), "--commout", fifo}, "no such file or directory"},
		{[]string{"--commin", fifo}, "--commin needs --commout"},
		{[]string{"--commout", fifo}, "--commout needs --commin"},
		{[]string{"--comm", fifo}, "is a FIFO, which carries one direction only; use commin and commout"},
	} {
		args := append([]string{"link"}, tc.args...)
		code, out := run(t, 10*time.Second, args...)
		oneLineError(t, code, out, tc.want, args)
	}
	assert.False(t, fileExists(p("nodir")), "nothing created for a failed start")
}

// TestFIFONoPermission runs sockmux as a user who may not read the FIFO.
func TestFIFONoPermission(t *testing.T) {
	skipWithoutFIFOs(t)
	t.Parallel()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	require.NoError(t, syscall.Mkfifo(in, 0o600))
	require.NoError(t, syscall.Mkfifo(out, 0o666))
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		// Root may open anything: run the binary as nobody, from a copy
		// nobody may execute, in a directory nobody may enter.
		require.NoError(t, os.Chmod(dir, 0o755))
		require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
		require.NoError(t, os.Chmod(out, 0o666))
		exe := filepath.Join(dir, "sockmux")
		copyFile(t, bin, exe, 0o755)
		cmd = exec.Command(exe, "link", "--commin", in, "--commout", out)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	} else {
		require.NoError(t, os.Chmod(in, 0o200))
		cmd = exec.Command(bin, "link", "--commin", in, "--commout", out)
	}
	outb, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	oneLineError(t, code, string(outb), "pipe: commin "+in+": permission denied (cannot read it)", cmd.Args)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}

// TestCommUnixSocket runs the link over one Unix domain socket path that
// both sides are given: one listens, the other connects. When the
// listener dies, the survivor takes the socket over and the restarted
// side connects to it.
func TestCommUnixSocket(t *testing.T) {
	skipWithoutFIFOs(t)
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "tunnel.sock")
	srv := transferServer(t)
	lport := freePort(t)
	a := start(t, "side A", "link", "--comm", sock, "-L", fwd(lport, srv))
	a.waitLog("pipe: listening for the peer on "+sock, 5*time.Second)
	b := start(t, "side B", "link", "--comm", sock)
	a.waitLog("link up", 10*time.Second)
	b.waitLog("link up", 10*time.Second)
	const size = 8 << 20
	took := transferWithin(t, addr(lport), size, size, 600, time.Minute)
	t.Logf("8 MiB each way over a Unix socket in %v", took.Round(time.Millisecond))

	// The listener (A) dies; B takes the socket over; A comes back and
	// connects to it.
	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)
	b.waitLog("pipe: listening for the peer on "+sock, 10*time.Second)
	a2 := start(t, "side A again", "link", "--comm", sock, "-L", fwd(lport, srv))
	a2.waitLog("link up", 10*time.Second)
	b.waitLog("peer started a new session", 10*time.Second)
	assert.Zero(t, a2.countLog("pipe: listening"), "the restarted side connects to the survivor")
	waitListening(t, addr(lport), 5*time.Second)
	transferWithin(t, addr(lport), 1<<20, 1<<20, 601, time.Minute)

	// A clean exit of the listener (B now) removes its socket file.
	b.signal(syscall.SIGTERM)
	assert.Equal(t, 0, b.wait(15*time.Second))
	a2.waitLog("transport lost", 5*time.Second)
	if fi, err := os.Lstat(sock); err == nil {
		// A2 may already have taken the socket over: then it is its own.
		assert.True(t, fi.Mode()&os.ModeSocket != 0)
		a2.waitLog("pipe: listening for the peer on "+sock, 5*time.Second)
	}
	assert.False(t, strings.Contains(a2.logText(), "panic"))
}
