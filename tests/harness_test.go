//go:build unix

// Package tests runs the real sockmux binary end to end: two link
// processes over real loopback sockets, FIFOs and virtual serial cables,
// with real TCP clients and servers on both sides.
package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
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

	"github.com/sockmux/sockmux/internal/testutil"
)

// bin is the sockmux binary under test, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sockmux-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "sockmux")
	args := []string{"build", "-o", bin}
	if os.Getenv("SOCKMUX_E2E_RACE") != "" {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/sockmux")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sockmux:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running sockmux process with its log captured.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
	err  error
}

type logWriter struct{ p *proc }

func (w logWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.log.Write(b)
}

// start runs sockmux with args; the process is killed when the test ends
// and its log shown if the test failed.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = logWriter{p}
	p.cmd.Stderr = logWriter{p}
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- log of %s (%s):\n%s", name, strings.Join(args, " "), p.logText())
		}
	})
	return p
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitLog waits until the log contains s.
func (p *proc) waitLog(s string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.logText(), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no %q in the log after %v", p.name, s, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLogAny waits until the log contains one of ss and returns it.
func (p *proc) waitLogAny(timeout time.Duration, ss ...string) string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		text := p.logText()
		for _, s := range ss {
			if strings.Contains(text, s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: none of %q in the log after %v", p.name, ss, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countLog counts occurrences of s in the log.
func (p *proc) countLog(s string) int { return strings.Count(p.logText(), s) }

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) signal(sig os.Signal) { _ = p.cmd.Process.Signal(sig) }

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v", p.name, timeout)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// run runs sockmux to completion and returns its exit code and output.
func run(t *testing.T, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	require.NoError(t, ctx.Err(), "sockmux %v hung; output:\n%s", args, out)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, string(out)
}

// freePort returns a loopback port nothing listens on right now, and that
// no server of the test will take meanwhile (testutil.FreePort).
func freePort(t *testing.T) int {
	t.Helper()
	p, err := testutil.FreePort()
	require.NoError(t, err)
	return p
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// transferServer answers the transfer protocol: the client sends the
// number of bytes it wants back (8 bytes, big endian), then its upload,
// then half-closes; the server streams the bytes asked for (from a seed
// the client also knows) while it reads the upload, then sends the
// upload's sha256.
func transferServer(t *testing.T) int {
	t.Helper()
	return testutil.Port(testutil.ServeLoopback(t, serveTransfer))
}

func serveTransfer(c net.Conn) {
	defer c.Close()
	var hdr [16]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	want := binary.BigEndian.Uint64(hdr[:8])
	seed := binary.BigEndian.Uint64(hdr[8:])
	sum := make(chan []byte, 1)
	go func() {
		h := sha256.New()
		_, _ = io.Copy(h, c)
		sum <- h.Sum(nil)
	}()
	if _, err := io.CopyN(c, newPattern(seed), int64(want)); err != nil {
		return
	}
	_, _ = c.Write(<-sum)
}

// pattern is a reproducible stream of pseudo-random bytes.
type pattern struct{ r *rand.ChaCha8 }

func newPattern(seed uint64) io.Reader {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	return pattern{rand.NewChaCha8(s)}
}

func (p pattern) Read(b []byte) (int, error) { return p.r.Read(b) }

// transfer connects to addr and moves up bytes there and down bytes back
// at the same time, checking both by sha256.
func transfer(addr string, up, down int64, seed uint64) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[:8], uint64(down))
	binary.BigEndian.PutUint64(hdr[8:], seed)
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	upHash, upErr := sendUpload(c, up, seed+1)
	got := sha256.New()
	if n, err := io.CopyN(got, c, down); err != nil {
		return fmt.Errorf("download: %d of %d bytes: %w", n, down, err)
	}
	want := sha256.New()
	_, _ = io.CopyN(want, newPattern(seed), down)
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		return fmt.Errorf("download of %d bytes arrived corrupted", down)
	}
	if err := <-upErr; err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	var sum [32]byte
	if _, err := io.ReadFull(c, sum[:]); err != nil {
		return fmt.Errorf("upload checksum: %w", err)
	}
	if !bytes.Equal(sum[:], upHash.Sum(nil)) {
		return fmt.Errorf("upload of %d bytes arrived corrupted", up)
	}
	return nil
}

// sendUpload writes up bytes of the pattern from seed to c in the
// background, then half-closes c. The channel tells how that went; the
// hash, of the bytes written, is whole once it has.
func sendUpload(c net.Conn, up int64, seed uint64) (hash.Hash, <-chan error) {
	upHash := sha256.New()
	upErr := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.MultiWriter(c, upHash), newPattern(seed), up)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		upErr <- err
	}()
	return upHash, upErr
}

// idleStream connects to address, sends a few bytes and leaves the
// connection idle; it is closed when the test ends.
func idleStream(t *testing.T, address string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", address)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	return c
}

// waitListening waits until something accepts connections at addr.
func waitListening(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens at %s after %v: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectTurnedAway connects to addr and checks that the connection is
// ended promptly, not left hanging: a reset or close that may come even
// before the dial returns (the far end can refuse that fast).
func expectTurnedAway(t *testing.T, addr string) {
	t.Helper()
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		require.ErrorIs(t, err, syscall.ECONNRESET, "dialling %s", addr)
		return
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	if errors.As(err, &ne) {
		assert.False(t, ne.Timeout(), "the client must be closed, not left hanging")
	}
	assert.Less(t, time.Since(start), 3*time.Second)
}
