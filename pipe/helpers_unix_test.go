//go:build unix

package pipe

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test binary doubles as a peer process: TestMain runs a helper
// instead of the tests when helperEnv is set.
const helperEnv = "SOCKMUX_PIPE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "echo-pair":
		d, err := NewPair(os.Getenv("PIPE_IN"), os.Getenv("PIPE_OUT"), nil)
		os.Exit(echo(d, err))
	case "echo-comm":
		d, err := NewComm(os.Getenv("PIPE_COMM"), nil)
		os.Exit(echo(d, err))
	case "newpair":
		// Print the constructor's verdict, for the permission test.
		if _, err := NewPair(os.Getenv("PIPE_IN"), os.Getenv("PIPE_OUT"), nil); err != nil {
			fmt.Println(err)
		} else {
			fmt.Println("ok")
		}
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// echo opens d once and echoes until the transport breaks.
func echo(d *Driver, err error) int {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	t, err := d.Open(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("open")
	_, _ = io.Copy(t, t)
	t.Close()
	d.Close()
	return 0
}

// startHelper runs the test binary as a helper process and kills it at
// cleanup. The channel is closed when the helper has opened its transport.
func startHelper(t *testing.T, mode string, env ...string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode}, env...)...)
	cmd.Stderr = os.Stderr
	w := &openWatcher{open: make(chan struct{})}
	cmd.Stdout = w
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, w.open
}

// openWatcher closes open when the helper prints "open".
type openWatcher struct {
	mu   sync.Mutex
	buf  []byte
	open chan struct{}
	seen bool
}

func (w *openWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if !w.seen && bytes.Contains(w.buf, []byte("open\n")) {
		w.seen = true
		close(w.open)
	}
	return len(p), nil
}

// fifoPaths returns the paths of two not yet existing FIFOs.
func fifoPaths(t *testing.T) (a2b, b2a string) {
	dir := t.TempDir()
	return filepath.Join(dir, "a2b"), filepath.Join(dir, "b2a")
}

// newSideA returns side A, which reads b2a and writes a2b.
func newSideA(t *testing.T) (a *Driver, a2b, b2a string) {
	t.Helper()
	a2b, b2a = fifoPaths(t)
	a, err := NewPair(b2a, a2b, nil)
	require.NoError(t, err)
	return a, a2b, b2a
}

// newPairs returns side A (reads b2a, writes a2b) and side B (crossed).
func newPairs(t *testing.T) (a, b *Driver, a2b, b2a string) {
	t.Helper()
	a, a2b, b2a = newSideA(t)
	b, err := NewPair(a2b, b2a, nil)
	require.NoError(t, err)
	return a, b, a2b, b2a
}

// openWithin opens d, giving it at most timeout; the transport is closed
// at cleanup.
func openWithin(t *testing.T, d *Driver, timeout time.Duration) io.ReadWriteCloser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tr, err := d.Open(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr
}

type opened struct {
	t   io.ReadWriteCloser
	err error
}

// openAsync runs d.Open in a goroutine.
func openAsync(ctx context.Context, d *Driver) <-chan opened {
	ch := make(chan opened, 1)
	go func() {
		t, err := d.Open(ctx)
		ch <- opened{t, err}
	}()
	return ch
}

// openBoth opens two drivers that wait for each other.
func openBoth(t *testing.T, a, b *Driver) (ta, tb io.ReadWriteCloser) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, cb := openAsync(ctx, a), openAsync(ctx, b)
	ra, rb := <-ca, <-cb
	require.NoError(t, ra.err)
	require.NoError(t, rb.err)
	t.Cleanup(func() { ra.t.Close(); rb.t.Close() })
	return ra.t, rb.t
}

// notYet asserts that nothing arrives on ch for d.
func notYet[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s returned early: %+v", what, v)
	case <-time.After(d):
	}
}

// within waits at most d for a value on ch.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		panic("unreachable")
	}
}

// peerOpens opens peer while ch, the pending Open of the other side, waits
// for it; it returns the waiting side's transport (after at most d) and
// the peer's, both closed at cleanup.
func peerOpens(t *testing.T, ctx context.Context, ch <-chan opened, peer *Driver, d time.Duration, what string) (waiting, other io.ReadWriteCloser) {
	t.Helper()
	tp, err := peer.Open(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { tp.Close() })
	r := within(t, ch, d, what)
	require.NoError(t, r.err)
	t.Cleanup(func() { r.t.Close() })
	return r.t, tp
}

// stopPeer sends SIGSTOP and, where /proc shows the threads, waits until
// every thread of the peer is stopped: kill returns before a thread on
// another core has taken the signal, and such a thread could still echo
// a message written right after.
func stopPeer(t *testing.T, peer *exec.Cmd) {
	t.Helper()
	require.NoError(t, peer.Process.Signal(syscall.SIGSTOP))
	dir := fmt.Sprintf("/proc/%d/task", peer.Process.Pid)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			time.Sleep(100 * time.Millisecond) // no /proc: give it time
			return
		}
		stopped := 0
		for _, task := range tasks {
			stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
			// The state follows the command's closing parenthesis.
			if i := bytes.LastIndexByte(stat, ')'); err == nil && i >= 0 && i+2 < len(stat) &&
				(stat[i+2] == 'T' || stat[i+2] == 't') {
				stopped++
			}
		}
		if stopped == len(tasks) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("peer %d did not stop within 5 s of SIGSTOP", peer.Process.Pid)
}

// killPeer kills the helper process peer with SIGKILL while a Read on tr
// waits: the Read ends with io.EOF. It closes tr and reaps the peer: until
// the dying process is reaped, its other descriptors may still be open, and
// an Open could return a transport that fails at once.
func killPeer(t *testing.T, peer *exec.Cmd, tr io.ReadWriteCloser) {
	t.Helper()
	rch := readAsync(tr, make([]byte, 100))
	require.NoError(t, peer.Process.Signal(syscall.SIGKILL))
	r := within(t, rch, 2*time.Second, "Read after the peer was killed")
	assert.ErrorIs(t, r.err, io.EOF)
	require.NoError(t, tr.Close())
	_ = peer.Wait()
}

// reopenRestarted checks that d's next Open waits while its peer is dead
// (whileDead, if not nil, runs then) and takes the peer restarted as the
// helper mode; the new transport echoes.
func reopenRestarted(t *testing.T, ctx context.Context, d *Driver, whileDead func(), mode string, env ...string) {
	t.Helper()
	ch := openAsync(ctx, d)
	notYet(t, ch, 300*time.Millisecond, "Open while the peer is dead")
	if whileDead != nil {
		whileDead()
	}
	startHelper(t, mode, env...)
	r := within(t, ch, 5*time.Second, "Open after the peer restarted")
	require.NoError(t, r.err)
	defer r.t.Close()
	echoCheck(t, r.t, 256<<10)
}

type readResult struct {
	n   int
	err error
}

// readAsync runs one Read in a goroutine.
func readAsync(r io.Reader, p []byte) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		n, err := r.Read(p)
		ch <- readResult{n, err}
	}()
	return ch
}

// transfer sends n random bytes from w to r in odd-sized writes and checks
// that r reads them all, unchanged.
func transfer(t *testing.T, w io.Writer, r io.Reader, n int) error {
	data := make([]byte, n)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	werr := make(chan error, 1)
	go func() {
		p := data
		for len(p) > 0 {
			k := min(len(p), 1+len(p)%70001)
			if _, err := w.Write(p[:k]); err != nil {
				werr <- err
				return
			}
			p = p[k:]
		}
		werr <- nil
	}()
	h := sha256.New()
	if _, err := io.CopyN(h, r, int64(n)); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("checksum mismatch over %d bytes", n)
	}
	return nil
}

// exchange sends n bytes each way at once.
func exchange(t *testing.T, x, y io.ReadWriter, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = transfer(t, x, y, n) }()
	go func() { defer wg.Done(); errs[1] = transfer(t, y, x, n) }()
	wg.Wait()
	require.NoError(t, errs[0], "x to y")
	require.NoError(t, errs[1], "y to x")
}

// echoCheck writes n bytes to rw and expects them back (the peer echoes).
func echoCheck(t *testing.T, rw io.ReadWriter, n int) {
	t.Helper()
	require.NoError(t, transfer(t, rw, rw, n))
}

// pipeGoroutines lists the goroutines, other than the caller's and the
// test runners', that run code of this package.
func pipeGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i > 0 && strings.Contains(g, "sockmux/pipe.") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, g)
		}
	}
	return out
}

// noLeak fails if goroutines of this package linger for more than a second.
func noLeak(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		g := pipeGoroutines()
		if len(g) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left behind:\n%s", strings.Join(g, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
