//go:build unix

package pipe

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// sockPath returns a short socket path (sun_path is ~104 bytes).
func sockPath(t *testing.T) string {
	dir, err := os.MkdirTemp("", "pipe")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

func newComm(t *testing.T, path string) *Driver {
	t.Helper()
	d, err := NewComm(path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func listening(d *Driver) bool {
	d.sys.sock.mu.Lock()
	defer d.sys.sock.mu.Unlock()
	return d.sys.sock.ln != nil
}

// listenerFirst returns the two drivers ordered listener, dialler.
func listenerFirst(a, b *Driver, ta, tb io.ReadWriteCloser) (*Driver, *Driver, io.ReadWriteCloser, io.ReadWriteCloser) {
	if listening(a) {
		return a, b, ta, tb
	}
	return b, a, tb, ta
}

func TestCommSocketExchange(t *testing.T) {
	path := sockPath(t)
	a, b := newComm(t, path), newComm(t, path)
	assert.Equal(t, "pipe comm="+path, a.String())
	ta, tb := openBoth(t, a, b)
	assert.NotEqual(t, listening(a), listening(b), "exactly one side listens")
	exchange(t, ta, tb, 3<<20)

	ta.Close()
	tb.Close()
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	require.NoError(t, a.Close(), "Close twice")
	_, err := os.Lstat(path)
	assert.ErrorIs(t, err, fs.ErrNotExist, "the listener removes its socket")
	_, err = a.Open(context.Background())
	assert.ErrorIs(t, err, ErrClosed)
	noLeak(t)
}

func TestCommSocketOpenCancels(t *testing.T) {
	path := sockPath(t)
	d := newComm(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	ch := openAsync(ctx, d)
	notYet(t, ch, 200*time.Millisecond, "Open without a peer")
	assert.True(t, listening(d))
	cancel()
	r := within(t, ch, time.Second, "cancelled Open")
	assert.ErrorIs(t, r.err, context.Canceled)

	// Close ends a pending Open.
	ch = openAsync(context.Background(), d)
	notYet(t, ch, 100*time.Millisecond, "Open without a peer")
	require.NoError(t, d.Close())
	r = within(t, ch, time.Second, "Open after Close")
	assert.ErrorIs(t, r.err, ErrClosed)
	noLeak(t)
}

func TestCommSocketRestart(t *testing.T) {
	path := sockPath(t)
	a, b := newComm(t, path), newComm(t, path)
	ta, tb := openBoth(t, a, b)
	lis, dia, tl, td := listenerFirst(a, b, ta, tb)
	exchange(t, tl, td, 64<<10)

	// The dialling side restarts: the listener sees the end, waits, and
	// takes the new peer.
	rch := readAsync(tl, make([]byte, 10))
	td.Close()
	dia.Close()
	r := within(t, rch, 2*time.Second, "Read after the peer left")
	assert.ErrorIs(t, r.err, io.EOF)
	tl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := openAsync(ctx, lis)
	notYet(t, ch, 200*time.Millisecond, "Open while the peer is away")
	dia2 := newComm(t, path)
	tl, td2 := peerOpens(t, ctx, ch, dia2, 2*time.Second, "Open after the peer came back")
	exchange(t, tl, td2, 64<<10)

	// The listening side goes away: the other side becomes the listener
	// and the restarted peer dials it.
	rch = readAsync(td2, make([]byte, 10))
	tl.Close()
	require.NoError(t, lis.Close())
	r = within(t, rch, 2*time.Second, "Read after the listener left")
	assert.ErrorIs(t, r.err, io.EOF)
	td2.Close()
	ch = openAsync(ctx, dia2)
	notYet(t, ch, 200*time.Millisecond, "Open while the peer is away")
	assert.True(t, listening(dia2))
	lis2 := newComm(t, path)
	td3, tl2 := peerOpens(t, ctx, ch, lis2, 2*time.Second, "Open after the peer came back")
	assert.False(t, listening(lis2))
	exchange(t, td3, tl2, 64<<10)
}

// TestCommSocketListenerKilled: a listener killed with SIGKILL leaves a
// stale socket file and no lock; the survivor replaces it and listens.
func TestCommSocketListenerKilled(t *testing.T) {
	path := sockPath(t)
	peer, _ := startHelper(t, "echo-comm", "PIPE_COMM="+path)
	// Wait for the helper to listen before dialling it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSocket != 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "helper never listened")
		time.Sleep(10 * time.Millisecond)
	}
	d := newComm(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := d.Open(ctx)
	require.NoError(t, err)
	assert.False(t, listening(d))
	echoCheck(t, tr, 256<<10)

	killPeer(t, peer, tr)
	_, err = os.Lstat(path)
	require.NoError(t, err, "stale socket file left by the killed helper")

	reopenRestarted(t, ctx, d, func() {
		assert.True(t, listening(d), "the survivor listens in place of the stale socket")
	}, "echo-comm", "PIPE_COMM="+path)
}

func TestCommSocketNewPeerReplacesOld(t *testing.T) {
	path := sockPath(t)
	lis := newComm(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := openAsync(ctx, lis)
	notYet(t, ch, 100*time.Millisecond, "Open")
	c1 := newComm(t, path)
	tl1, t1 := peerOpens(t, ctx, ch, c1, 2*time.Second, "Open")
	exchange(t, tl1, t1, 1<<10)

	lch := readAsync(tl1, make([]byte, 10))
	c1ch := readAsync(t1, make([]byte, 10))
	c2 := newComm(t, path)
	t2, err := c2.Open(ctx)
	require.NoError(t, err)
	defer t2.Close()
	assert.Error(t, within(t, lch, 2*time.Second, "the old peer's transport").err)
	assert.ErrorIs(t, within(t, c1ch, 2*time.Second, "the old peer's Read").err, io.EOF)
	tl1.Close()
	tl2, err := lis.Open(ctx)
	require.NoError(t, err)
	defer tl2.Close()
	exchange(t, tl2, t2, 64<<10)
}

func TestNewCommErrors(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	require.NoError(t, os.WriteFile(p("file"), []byte("x"), 0o600))
	require.NoError(t, unix.Mkfifo(p("fifo"), 0o600))
	for _, tc := range []struct{ name, path, want string }{
		{"regular file", p("file"), "comm " + p("file") + " is a regular file; want a serial device, another character device or a Unix socket path"},
		{"null device", "/dev/null", "comm /dev/null is /dev/null, which reaches no peer"},
		{"zero device", "/dev/zero", "comm /dev/zero is /dev/zero, which reaches no peer"},
		{"directory", dir, "is a directory"},
		{"FIFO", p("fifo"), "is a FIFO, which carries one direction only; use commin and commout"},
		{"missing directory", p("nodir/s"), "no such file or directory"},
		{"missing device", "/dev/sockmux-no-such-device", "no such device"},
		{"too long", p(strings.Repeat("x", 120)), "path too long for a Unix socket"},
		{"windows name", `\\.\pipe\sockmux`, "Windows named pipe name"},
		{"empty", "", "needs a path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewComm(tc.path, nil)
			require.Error(t, err)
			assert.Nil(t, d)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestCommCharDevice(t *testing.T) {
	// NewComm refuses /dev/null (it reaches no peer), but it is a handy
	// character device that ends at once: build the driver directly.
	d := &Driver{log: newLogger(nil), desc: "pipe comm=/dev/null",
		sys: driverSys{comm: endpoint{role: "comm", path: "/dev/null", kind: kindCharDev}}}
	tr, err := d.Open(context.Background())
	require.NoError(t, err)
	_, err = tr.Write([]byte("gone"))
	require.NoError(t, err)
	_, err = tr.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the end of a device is reported")
	require.NoError(t, tr.Close())
	require.NoError(t, d.Close())
}
