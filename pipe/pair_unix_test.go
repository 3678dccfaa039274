//go:build unix

package pipe

import (
	"context"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sockmux/sockmux/link"
)

func TestPairDescribes(t *testing.T) {
	a, _, a2b, b2a := newPairs(t)
	assert.Equal(t, "pipe in="+b2a+" out="+a2b, a.String())
	assert.Equal(t, link.Properties{LineRate: 0, Reliable: true}, a.Properties())
	assert.NoError(t, a.Close())

	for _, p := range []string{a2b, b2a} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.NotZero(t, fi.Mode()&fs.ModeNamedPipe, "%s is a FIFO", p)
		assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), "%s mode", p)
	}
}

// withRecheck runs f with Linux's epoll and again with the deadline
// fallback used on kqueue platforms.
func withRecheck(t *testing.T, f func(t *testing.T)) {
	t.Run("poller", f)
	t.Run("recheck", func(t *testing.T) {
		old := recheckInterval
		recheckInterval = 30 * time.Millisecond
		defer func() { recheckInterval = old }()
		f(t)
	})
}

func TestPairExchange(t *testing.T) {
	withRecheck(t, func(t *testing.T) {
		a, b, _, _ := newPairs(t)
		ta, tb := openBoth(t, a, b)
		exchange(t, ta, tb, 3<<20)
	})
}

func TestPairOpenWaitsAndCancels(t *testing.T) {
	a, _, a2b, _ := newPairs(t)

	// Nobody reads a2b: Open waits to open it for writing.
	ctx, cancel := context.WithCancel(context.Background())
	ch := openAsync(ctx, a)
	notYet(t, ch, 300*time.Millisecond, "Open without a peer")
	start := time.Now()
	cancel()
	r := within(t, ch, time.Second, "cancelled Open")
	assert.ErrorIs(t, r.err, context.Canceled)
	assert.Nil(t, r.t)
	assert.Less(t, time.Since(start), 500*time.Millisecond)
	noLeak(t)

	// The peer opened a2b for reading but never opens b2a for writing:
	// Open waits for a writer on b2a.
	fd, err := unix.Open(a2b, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel2()
	start = time.Now()
	r = within(t, openAsync(ctx2, a), 2*time.Second, "Open with a deadline")
	assert.ErrorIs(t, r.err, context.DeadlineExceeded)
	assert.GreaterOrEqual(t, time.Since(start), 390*time.Millisecond)
	noLeak(t)

	// An already ended ctx returns at once.
	_, err = a.Open(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestPairPeerClosesAndReopens(t *testing.T) {
	withRecheck(t, func(t *testing.T) {
		a, b, _, _ := newPairs(t)
		ta, tb := openBoth(t, a, b)
		exchange(t, ta, tb, 64<<10)

		// B's link closes its transport: A's pending Read fails at once.
		rch := readAsync(ta, make([]byte, 100))
		notYet(t, rch, 100*time.Millisecond, "Read with the peer present")
		require.NoError(t, tb.Close())
		r := within(t, rch, 2*time.Second, "Read after the peer left")
		assert.ErrorIs(t, r.err, io.EOF)
		assert.Contains(t, r.err.Error(), "peer closed")
		_, err := ta.Write([]byte("x"))
		assert.ErrorIs(t, err, syscall.EPIPE)
		require.NoError(t, ta.Close())

		// A's next Open waits until B opens again, then bytes flow.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ch := openAsync(ctx, a)
		notYet(t, ch, 300*time.Millisecond, "Open while the peer is away")
		ta2, tb2 := peerOpens(t, ctx, ch, b, 2*time.Second, "Open after the peer came back")
		exchange(t, ta2, tb2, 256<<10)
	})
}

func TestPairCloseUnblocks(t *testing.T) {
	withRecheck(t, func(t *testing.T) {
		a, b, _, _ := newPairs(t)
		ta, _ := openBoth(t, a, b)

		rch := readAsync(ta, make([]byte, 10))
		notYet(t, rch, 100*time.Millisecond, "Read")
		require.NoError(t, ta.Close())
		r := within(t, rch, time.Second, "Read after Close")
		assert.Error(t, r.err)

		// A Write stuck on a full FIFO (the peer does not read).
		a2, b2, _, _ := newPairs(t)
		ta2, _ := openBoth(t, a2, b2)
		wch := make(chan error, 1)
		go func() {
			_, err := ta2.Write(make([]byte, 4<<20))
			wch <- err
		}()
		notYet(t, wch, 200*time.Millisecond, "Write to a full FIFO")
		require.NoError(t, ta2.Close())
		assert.Error(t, within(t, wch, time.Second, "Write after Close"))
	})
	noLeak(t)
}

func TestPairPeerKilled(t *testing.T) {
	a, a2b, b2a := newSideA(t)
	env := []string{"PIPE_IN=" + a2b, "PIPE_OUT=" + b2a}

	peer, _ := startHelper(t, "echo-pair", env...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ta, err := a.Open(ctx)
	require.NoError(t, err)
	echoCheck(t, ta, 256<<10)

	killPeer(t, peer, ta)
	reopenRestarted(t, ctx, a, nil, "echo-pair", env...)
}

func TestPairPeerStopped(t *testing.T) {
	a, a2b, b2a := newSideA(t)
	peer, _ := startHelper(t, "echo-pair", "PIPE_IN="+a2b, "PIPE_OUT="+b2a)
	ta := openWithin(t, a, 20*time.Second)
	echoCheck(t, ta, 64<<10)

	stopPeer(t, peer)
	defer peer.Process.Signal(syscall.SIGCONT)
	msg := []byte("still there?")
	_, err := ta.Write(msg)
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	rch := readAsync(ta, buf)
	notYet(t, rch, time.Second, "Read from a stopped peer")

	require.NoError(t, peer.Process.Signal(syscall.SIGCONT))
	r := within(t, rch, 2*time.Second, "Read after SIGCONT")
	require.NoError(t, r.err)
	_, err = io.ReadFull(ta, buf[r.n:])
	require.NoError(t, err)
	assert.Equal(t, msg, buf)
	echoCheck(t, ta, 64<<10)
}

// TestPairWithCat uses a foreign peer that opens its FIFOs the classic
// blocking way: sh opens a2b for reading, then b2a for writing.
func TestPairWithCat(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	a, a2b, b2a := newSideA(t)
	cmd := exec.Command("sh", "-c", `exec cat <"$0" >"$1"`, a2b, b2a)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ta := openWithin(t, a, 10*time.Second)
	echoCheck(t, ta, 1<<20)
}

func TestPairCharDevices(t *testing.T) {
	d, err := NewPair("/dev/zero", "/dev/null", nil)
	require.NoError(t, err)
	tr := openWithin(t, d, 5*time.Second)
	buf := []byte{1, 2, 3}
	_, err = io.ReadFull(tr, buf)
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 0, 0}, buf)
	_, err = tr.Write([]byte("discarded"))
	require.NoError(t, err)
}

func TestNewPairErrors(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	require.NoError(t, os.WriteFile(p("file"), []byte("x"), 0o600))
	require.NoError(t, os.Mkdir(p("dir"), 0o755))
	require.NoError(t, unix.Mkfifo(p("fifo"), 0o600))
	require.NoError(t, os.Symlink(p("fifo"), p("fifolink")))
	require.NoError(t, os.Link(p("fifo"), p("fifohard")))
	require.NoError(t, os.Symlink(p("nowhere"), p("dangling")))
	ln, err := net.Listen("unix", p("sock"))
	require.NoError(t, err)
	defer ln.Close()

	for _, tc := range []struct {
		name, in, out, want string
	}{
		{"in regular file", p("file"), p("out"), "commin " + p("file") + " is a regular file; want a FIFO (named pipe) or a character device"},
		{"out directory", p("in"), p("dir"), "commout " + p("dir") + " is a directory"},
		{"in socket", p("sock"), p("out"), "is a Unix socket"},
		{"same path", p("fifo"), p("fifo"), "commin and commout are the same file"},
		{"same path, cleaned", p("fifo"), dir + "/./fifo", "are the same file"},
		{"symlink to the same FIFO", p("fifo"), p("fifolink"), "are the same file"},
		{"hard link to the same FIFO", p("fifohard"), p("fifo"), "are the same file"},
		{"missing directory", p("nodir/in"), p("out"), "directory " + p("nodir") + ": no such file or directory"},
		{"parent is a file", p("file/in"), p("out"), "not a directory"},
		{"dangling symlink", p("dangling"), p("out"), "dangling symbolic link"},
		{"windows name", `\\.\pipe\a2b`, p("out"), "Windows named pipe name"},
		{"empty", "", p("out"), "need a path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewPair(tc.in, tc.out, nil)
			require.Error(t, err)
			assert.Nil(t, d)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n")
			assert.True(t, strings.HasPrefix(err.Error(), "pipe: "), err.Error())
			// A failed constructor leaves nothing behind.
			for _, q := range []string{p("in"), p("out")} {
				_, err := os.Lstat(q)
				assert.ErrorIs(t, err, fs.ErrNotExist, "%s created", q)
			}
		})
	}
}

// TestNewPairPermission checks that a FIFO this process may not open, or
// a directory it may not create one in, is refused at once. Root passes
// every permission check, so as root the check runs in a helper process
// as user nobody.
func TestNewPairPermission(t *testing.T) {
	dir, err := os.MkdirTemp("", "pipe-perm-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	locked := filepath.Join(dir, "locked")
	require.NoError(t, unix.Mkfifo(locked, 0o600))
	ro := filepath.Join(dir, "ro")
	require.NoError(t, os.Mkdir(ro, 0o755))
	ok := filepath.Join(dir, "ok")
	require.NoError(t, unix.Mkfifo(ok, 0o666))
	require.NoError(t, os.Chmod(ok, 0o666))

	check := func(in, out string) string {
		if os.Geteuid() != 0 {
			_, err := NewPair(in, out, nil)
			if err == nil {
				return "ok"
			}
			return err.Error()
		}
		// Copy the test binary where nobody may run it.
		bin := filepath.Join(dir, "pipe.test")
		if _, err := os.Stat(bin); err != nil {
			src, err := os.ReadFile(os.Args[0])
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(bin, src, 0o755))
		}
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=newpair", "PIPE_IN="+in, "PIPE_OUT="+out)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out2, err := cmd.Output()
		if err != nil {
			t.Skipf("cannot run a helper as nobody: %v", err)
		}
		return strings.TrimSpace(string(out2))
	}
	if os.Geteuid() != 0 {
		require.NoError(t, os.Chmod(ro, 0o555))
		defer os.Chmod(ro, 0o755)
	}

	rw := filepath.Join(dir, "rw")
	require.NoError(t, os.Mkdir(rw, 0o777))
	require.NoError(t, os.Chmod(rw, 0o777))
	assert.Equal(t, "ok", check(ok, filepath.Join(rw, "new")), "an accessible FIFO and a new one")
	got := check(locked, ok)
	assert.Contains(t, got, "pipe: commin "+locked+": permission denied (cannot read it)")
	got = check(ok, locked)
	assert.Contains(t, got, "pipe: commout "+locked+": permission denied (cannot write it)")
	got = check(ok, filepath.Join(ro, "out"))
	assert.Contains(t, got, "pipe: commout "+filepath.Join(ro, "out")+": cannot create a FIFO: permission denied")
	assert.NotContains(t, got, "\n")
}

// TestPairFIFORemoved checks that Open recreates a FIFO removed while the
// peer was away, and that a FIFO replaced while Open waits is reopened.
func TestPairFIFORemoved(t *testing.T) {
	a, b, a2b, b2a := newPairs(t)
	require.NoError(t, os.Remove(a2b))
	require.NoError(t, os.Remove(b2a))
	ta, tb := openBoth(t, a, b)
	exchange(t, ta, tb, 1<<10)
	ta.Close()
	tb.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Hold a2b for reading so that A gets as far as waiting for a writer
	// on b2a, then replace b2a under it.
	fd, err := unix.Open(a2b, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	require.NoError(t, err)
	ch := openAsync(ctx, a)
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, os.Remove(b2a))
	require.NoError(t, unix.Mkfifo(b2a, 0o600))
	time.Sleep(300 * time.Millisecond)
	unix.Close(fd)
	ta2, tb2 := peerOpens(t, ctx, ch, b, 5*time.Second, "Open")
	exchange(t, ta2, tb2, 64<<10)
}

func TestPairReadsWhatArrivesWithTheWriter(t *testing.T) {
	// The peer writes before this side probes for it: the probed byte
	// must not be lost.
	a, b, _, _ := newPairs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bch := openAsync(ctx, b)
	// A opens its ends by hand partially: let B finish first by opening
	// a2b for writing and b2a for reading like A would.
	rfd, err := unix.Open(a.sys.in.path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer unix.Close(rfd)
	var wfd int
	for {
		wfd, err = unix.Open(a.sys.out.path, unix.O_WRONLY|unix.O_NONBLOCK, 0)
		if err == nil {
			break
		}
		require.ErrorIs(t, err, unix.ENXIO)
		time.Sleep(10 * time.Millisecond)
	}
	rb := within(t, bch, 5*time.Second, "B's Open")
	require.NoError(t, rb.err)
	defer rb.t.Close()
	_, err = rb.t.Write([]byte("hello"))
	require.NoError(t, err)
	// Now A opens for real while the hand-made ends still hold the FIFOs.
	ta, err := a.Open(ctx)
	require.NoError(t, err)
	defer ta.Close()
	unix.Close(wfd)
	buf := make([]byte, 5)
	_, err = io.ReadFull(ta, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf))
}
