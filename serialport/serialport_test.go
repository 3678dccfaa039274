//go:build linux

package serialport

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/cable"
	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/link"
)

func startCable(t *testing.T, baud int) (*cable.Cable, string, string) {
	t.Helper()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "ttyA"), filepath.Join(dir, "ttyB")
	c, err := cable.Start(context.Background(), cable.Config{PathA: a, PathB: b, Baud: baud, Seed: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, a, b
}

func mustOpen(t *testing.T, path string, mode Mode) *Port {
	t.Helper()
	p, err := OpenPort(path, mode)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func readN(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(r, buf)
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out reading %d bytes", n)
	}
	return buf
}

func TestWriteReadBothWays(t *testing.T) {
	_, a, b := startCable(t, 0)
	pa, pb := mustOpen(t, a, DefaultMode()), mustOpen(t, b, DefaultMode())

	msg := bytes.Repeat([]byte("sockmux over a serial line\x00\xff\r\n"), 2000)
	go func() { _, _ = pa.Write(msg) }()
	assert.Equal(t, msg, readN(t, pb, len(msg)), "A→B")

	_, err := pb.Write([]byte("reply"))
	require.NoError(t, err)
	assert.Equal(t, "reply", string(readN(t, pa, 5)), "B→A")
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(regular, nil, 0o600))
	_, _, b := startCable(t, 0)
	busy := mustOpen(t, b, DefaultMode())

	for _, tc := range []struct {
		name, path string
		mode       Mode
		kind       error
		msg        string
	}{
		{"missing", filepath.Join(dir, "ttyUSB9"), DefaultMode(), ErrNotFound, "no such device"},
		{"regular file", regular, DefaultMode(), ErrNotSerial, "not a serial device: it is a regular file"},
		{"directory", dir, DefaultMode(), ErrNotSerial, "not a serial device: it is a directory"},
		{"not a tty", "/dev/null", DefaultMode(), ErrNotSerial, "not a terminal"},
		{"busy", busy.Path(), DefaultMode(), ErrBusy, "device busy"},
		{"1.5 stop bits", b, Mode{Baud: 9600, StopBits: "1.5"}, ErrUnsupported, "1.5 stop bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(tc.path, tc.mode, nil)
			require.Error(t, err)
			assert.Nil(t, d)
			assert.ErrorIs(t, err, tc.kind)
			assert.Contains(t, err.Error(), tc.msg)
			assert.True(t, strings.HasPrefix(err.Error(), "serial "+tc.path+": "), err.Error())
			assert.NotContains(t, err.Error(), "\n")
		})
	}

	_, err := New(b, Mode{Baud: 115200, Parity: "bogus"}, nil)
	assert.ErrorContains(t, err, `invalid parity "bogus"`)
	_, err = New(b, Mode{Baud: 115200, DataBits: 7}, nil)
	assert.ErrorIs(t, err, ErrUnsupported)
	assert.ErrorContains(t, err, "use 8")
}

func TestPermissionErrorMentionsDialout(t *testing.T) {
	err := openError("/dev/ttyUSB0", &os.PathError{Op: "open", Path: "/dev/ttyUSB0", Err: syscall.EACCES})
	assert.ErrorIs(t, err, ErrPermission)
	assert.ErrorIs(t, err, os.ErrPermission)
	assert.Contains(t, err.Error(), "dialout")
	assert.ErrorIs(t, openError("/dev/ttyUSB0", syscall.EBUSY), ErrBusy)
	assert.ErrorIs(t, openError("/dev/ttyS9", syscall.ENXIO), ErrNotFound)
}

func TestModesOnAPty(t *testing.T) {
	_, a, _ := startCable(t, 0)
	for _, m := range []Mode{
		{Baud: 9600, DataBits: 7, Parity: "even", StopBits: "2"},
		{Baud: 250000, Flow: "rtscts"}, // not a standard rate: set with BOTHER
		{Baud: 1200, Parity: "mark"},
	} {
		p, err := OpenPort(a, m)
		require.NoError(t, err, m.String())
		if speed, ok := actualSpeed(p.sys.f); ok {
			assert.Equal(t, m.Baud, speed, m.String())
		}
		require.NoError(t, p.Close())
	}
}

func TestDriverProperties(t *testing.T) {
	_, a, _ := startCable(t, 0)
	d, err := New(a, Mode{Baud: 9600, Parity: "even"}, nil)
	require.NoError(t, err)
	defer d.Close()
	assert.Equal(t, link.Properties{LineRate: 872, Reliable: false}, d.Properties())
	assert.Equal(t, "serial "+a+" 9600 8E1", d.String())
	assert.Equal(t, a, d.Path())
}

func TestReopenAfterUnplug(t *testing.T) {
	c, a, _ := startCable(t, 0)
	var logs testutil.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	d, err := New(a, DefaultMode(), log)
	require.NoError(t, err)
	ctx := context.Background()

	tr, err := d.Open(ctx)
	require.NoError(t, err)
	readErr := make(chan error, 1)
	go func() {
		_, err := tr.Read(make([]byte, 16))
		readErr <- err
	}()

	unplugged := time.Now()
	require.NoError(t, c.Unplug(600*time.Millisecond))
	select {
	case err := <-readErr:
		assert.ErrorIs(t, err, ErrDisconnected)
		assert.Less(t, time.Since(unplugged), 500*time.Millisecond, "unplug noticed promptly")
	case <-time.After(2 * time.Second):
		t.Fatal("Read did not fail after unplug")
	}
	_, err = tr.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrDisconnected)
	require.NoError(t, tr.Close())

	tr2, err := d.Open(ctx)
	require.NoError(t, err)
	defer tr2.Close()
	assert.GreaterOrEqual(t, time.Since(unplugged), 550*time.Millisecond, "Open waited for the replug")
	assert.Less(t, time.Since(unplugged), 2500*time.Millisecond)
	assert.Contains(t, logs.String(), "serial "+a+" lost: no such device")
	assert.Contains(t, logs.String(), "; waiting")
	assert.Contains(t, logs.String(), "serial "+a+" reopened")

	// The new port works.
	_, b := c.Devices()
	peer, err := os.OpenFile(b, os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	defer peer.Close()
	_, err = tr2.Write([]byte("back"))
	require.NoError(t, err)
	assert.Equal(t, "back", string(readN(t, peer, 4)))
}

func TestOpenGivesUpWhenContextEnds(t *testing.T) {
	c, a, _ := startCable(t, 0)
	d, err := New(a, DefaultMode(), nil)
	require.NoError(t, err)
	tr, err := d.Open(context.Background())
	require.NoError(t, err)
	require.NoError(t, tr.Close())
	require.NoError(t, c.Unplug(0)) // out until Replug

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = d.Open(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)
}

func TestCloseUnblocksRead(t *testing.T) {
	_, a, _ := startCable(t, 0)
	p := mustOpen(t, a, DefaultMode())
	done := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 16))
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // past a poll interval: Read is waiting
	closed := time.Now()
	require.NoError(t, p.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrClosed)
		assert.Less(t, time.Since(closed), 100*time.Millisecond)
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	_, err := p.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrClosed)
	assert.NoError(t, p.Close(), "closing twice")
}

func TestCloseUnblocksWrite(t *testing.T) {
	// At 300 baud the line takes 30 bytes/s: a big write blocks.
	_, a, _ := startCable(t, 300)
	p := mustOpen(t, a, DefaultMode())
	done := make(chan error, 1)
	go func() {
		_, err := p.Write(make([]byte, 1<<20))
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, p.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Write")
	}
}

func TestReadNoticesReplacedDevice(t *testing.T) {
	// A path that comes to name another device (a USB adapter replugged as
	// the same name) fails reads, even though the old device reports
	// nothing.
	m1, s1, err := pty.Open()
	require.NoError(t, err)
	defer m1.Close()
	defer s1.Close()
	m2, s2, err := pty.Open()
	require.NoError(t, err)
	defer m2.Close()
	defer s2.Close()
	link := filepath.Join(t.TempDir(), "tty")
	require.NoError(t, os.Symlink(s1.Name(), link))

	p := mustOpen(t, link, DefaultMode())
	done := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 16))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, os.Remove(link))
	require.NoError(t, os.Symlink(s2.Name(), link))
	select {
	case err := <-done:
		// Where the node is watched (inotify on Linux) the removal is
		// seen before the new node appears; either way the read fails.
		assert.ErrorIs(t, err, ErrDisconnected)
		assert.Regexp(t, "another device|node is gone", err.Error())
	case <-time.After(2 * time.Second):
		t.Fatal("Read did not notice the device changed")
	}
}

func TestOutputQueued(t *testing.T) {
	_, a, _ := startCable(t, 0)
	p := mustOpen(t, a, DefaultMode())

	// A Linux pseudo-terminal has no output queue: TIOCOUTQ reads 0 and
	// the port says so instead of pretending.
	_, err := p.OutputQueued()
	assert.ErrorIs(t, err, ErrUnsupported)

	// On a device with one, the ioctl is what is asked.
	p.sys.pty = false
	n, err := p.OutputQueued()
	assert.NoError(t, err)
	assert.Zero(t, n)
	p.sys.pty = true

	// The driver's transport for a pty offers no link.OutputQueuer.
	_, ok := transport(p).(link.OutputQueuer)
	assert.False(t, ok)
	p.sys.pty = false
	_, ok = transport(p).(link.OutputQueuer)
	assert.True(t, ok)
	p.sys.pty = true

	require.NoError(t, p.Close())
	_, err = p.OutputQueued()
	assert.ErrorIs(t, err, ErrClosed)
}

func TestIsSerial(t *testing.T) {
	c, a, _ := startCable(t, 0)
	dev, _ := c.Devices()
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(regular, nil, 0o600))
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))

	assert.True(t, IsSerial(a), "symlink to a pty")
	assert.True(t, IsSerial(dev), "pty")
	assert.True(t, IsSerial("/dev/ttyUSB97"), "missing but named like a serial port")
	assert.True(t, IsSerial("usb:0403:6001:A10K3ZP"), "an identity")
	assert.True(t, IsSerial("serial:bogus:"), "an identity, even a malformed one, for New to reject")
	assert.False(t, IsSerial(regular))
	assert.False(t, IsSerial(dir))
	assert.False(t, IsSerial(fifo))
	assert.False(t, IsSerial("/dev/null"))
	assert.False(t, IsSerial(filepath.Join(dir, "missing")))
	if _, err := os.Stat("/dev/tty0"); err == nil {
		assert.True(t, IsSerial("/dev/tty0"), "a tty-class device")
	}
}

func TestModeValidation(t *testing.T) {
	assert.NoError(t, DefaultMode().Validate())
	assert.NoError(t, Mode{Baud: 9600}.Validate(), "zero fields take defaults")
	assert.NoError(t, Mode{Baud: 9600, Parity: "EVEN", Flow: "RTSCTS"}.Validate(), "case does not matter")
	for _, tc := range []struct {
		m   Mode
		msg string
	}{
		{Mode{}, "invalid baud rate 0"},
		{Mode{Baud: -5}, "invalid baud rate -5"},
		{Mode{Baud: 1 << 30}, "invalid baud rate"},
		{Mode{Baud: 9600, DataBits: 9}, "invalid data bits 9: must be 5, 6, 7 or 8"},
		{Mode{Baud: 9600, Parity: "x"}, `invalid parity "x"`},
		{Mode{Baud: 9600, StopBits: "3"}, `invalid stop bits "3"`},
		{Mode{Baud: 9600, Flow: "xonxoff"}, `invalid flow control "xonxoff": must be none or rtscts`},
	} {
		assert.ErrorContains(t, tc.m.Validate(), tc.msg)
	}
}

func TestBitsPerByte(t *testing.T) {
	for _, tc := range []struct {
		m    Mode
		bits float64
		rate int
		str  string
	}{
		{DefaultMode(), 10, 11520, "115200 8N1"},
		{Mode{Baud: 9600, DataBits: 7, Parity: "even", StopBits: "2"}, 11, 872, "9600 7E2"},
		{Mode{Baud: 9600, StopBits: "1.5"}, 10.5, 914, "9600 8N1.5"},
		{Mode{Baud: 57600, Parity: "odd", Flow: "rtscts"}, 11, 5236, "57600 8O1 rtscts"},
	} {
		assert.Equal(t, tc.bits, tc.m.BitsPerByte(), tc.str)
		assert.Equal(t, tc.rate, tc.m.BytesPerSecond(), tc.str)
		assert.Equal(t, tc.str, tc.m.String())
	}
}

// NewWaiting takes a device that is not there yet: it logs that it
// waits, and its first Open returns once the device appears. Settings no
// device fixes are still an error at once.
func TestNewWaitingAbsentDevice(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "ttyA"), filepath.Join(dir, "ttyB")
	logs := &testutil.LogBuffer{}
	d, err := NewWaiting(a, DefaultMode(), Options{}, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	defer d.Close()
	assert.Contains(t, logs.String(), "serial "+a+" not available: no such device; waiting")
	assert.Equal(t, "serial "+a+" 115200 8N1", d.String())

	_, err = NewWaiting(a, Mode{Baud: 9600, DataBits: 7}, Options{}, nil)
	assert.ErrorContains(t, err, "data bits")
	_, err = NewWaiting("usb:zz", DefaultMode(), Options{}, nil)
	assert.ErrorContains(t, err, "device identity")

	opened := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rw, err := d.Open(ctx)
		if err == nil {
			_, err = rw.Write([]byte("hi"))
			rw.Close()
		}
		opened <- err
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-opened:
		t.Fatalf("opened before the device existed: %v", err)
	default:
	}
	c, err := cable.Start(context.Background(), cable.Config{PathA: a, PathB: b, Seed: 1})
	require.NoError(t, err)
	defer c.Close()
	pb := mustOpen(t, b, DefaultMode())
	require.NoError(t, <-opened)
	assert.Equal(t, []byte("hi"), readN(t, pb, 2))
	assert.Contains(t, logs.String(), "serial "+a+" opened")
	assert.NotContains(t, logs.String(), "lost")
}
