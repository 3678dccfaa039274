package serialport

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sockmux/sockmux/internal/fdctl"
	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fakeModem is an injected modem-status source: pseudo-terminals have no
// modem lines, so the carrier logic is tested through it.
type fakeModem struct {
	mu    sync.Mutex
	lines ModemLines
	err   error
}

func (f *fakeModem) get() (ModemLines, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lines, f.err
}

func (f *fakeModem) set(fn func(*ModemLines)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.lines)
}

func hupcl(t *testing.T, p *Port) bool {
	t.Helper()
	var on bool
	require.NoError(t, fdctl.Control(p.sys.f, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		on = err == nil && tio.Cflag&unix.HUPCL != 0
		return err
	}))
	return on
}

func TestParseLevelAndCarrier(t *testing.T) {
	for in, want := range map[string]Level{"": LevelDefault, "on": LevelOn, "OFF": LevelOff, " off ": LevelOff} {
		got, err := ParseLevel("--dtr", in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := ParseLevel("--rts", "low")
	assert.EqualError(t, err, `invalid --rts "low": must be on or off`)
	assert.Equal(t, "on", LevelDefault.String())
	assert.Equal(t, "off", LevelOff.String())

	for in, want := range map[string]string{"": "", "none": "", "DCD": "dcd", "dsr": "dsr", "cts": "cts"} {
		got, err := ParseCarrier(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err = ParseCarrier("ri")
	assert.EqualError(t, err, `invalid --carrier "ri": must be dcd, dsr or cts (or none)`)
	_, err = OpenPortWith("/dev/ttyUSB97", DefaultMode(), Options{Carrier: "rts"})
	assert.ErrorContains(t, err, `serial /dev/ttyUSB97: invalid --carrier "rts"`)
	_, err = NewWith("/dev/ttyUSB97", Mode{Baud: 9600, Flow: FlowRTSCTS}, Options{RTS: LevelOff}, nil)
	assert.ErrorContains(t, err, "serial /dev/ttyUSB97: --rts off cannot go with --flow rtscts")
	_, err = NewWith("/dev/ttyUSB97", Mode{Baud: 9600, Flow: FlowRTSCTS}, Options{Carrier: CarrierCTS}, nil)
	assert.EqualError(t, err, "serial /dev/ttyUSB97: --carrier cts cannot go with --flow rtscts: the far end lowers its RTS, this end's CTS, to pause the sender, which is not a lost carrier")
}

func TestLinesOnAPty(t *testing.T) {
	_, a, _ := startCable(t, 0)

	// Default: as before, HUPCL is left as the device had it.
	p, err := OpenPort(a, DefaultMode())
	require.NoError(t, err)
	require.NoError(t, fdctl.Control(p.sys.f, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		tio.Cflag |= unix.HUPCL
		return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	}))
	require.NoError(t, p.Close())
	p, err = OpenPort(a, DefaultMode())
	require.NoError(t, err)
	assert.True(t, hupcl(t, p), "HUPCL kept without --dtr or --rts")
	require.NoError(t, p.Close())

	// --dtr off --rts off on a pty: open succeeds, HUPCL is cleared, and
	// the lines a pty does not have are reported, not an error.
	p, err = OpenPortWith(a, DefaultMode(), Options{DTR: LevelOff, RTS: LevelOff})
	require.NoError(t, err)
	assert.False(t, hupcl(t, p), "HUPCL cleared")
	assert.True(t, p.ext.noModem)
	assert.Equal(t, "no modem-control lines (a pseudo-terminal?): DTR and RTS not set; HUPCL cleared", p.ext.linesMsg)
	_, err = p.ModemLines()
	assert.ErrorIs(t, err, ErrUnsupported)
	assert.ErrorContains(t, err, "a pseudo-terminal has none")
	_, err = p.ErrorCounts()
	assert.ErrorIs(t, err, ErrUnsupported, "a pty has no TIOCGICOUNT")
	require.NoError(t, p.Close())

	// A carrier line on a device without modem lines is refused clearly.
	_, err = OpenPortWith(a, DefaultMode(), Options{Carrier: CarrierDCD})
	assert.ErrorIs(t, err, ErrUnsupported)
	assert.ErrorContains(t, err, "--carrier dcd needs a device with modem-status lines; this one has none (a pseudo-terminal?)")
}

func TestDriverLogsLines(t *testing.T) {
	_, a, _ := startCable(t, 0)
	var logs testutil.LogBuffer
	d, err := NewWith(a, DefaultMode(), Options{DTR: LevelOff, RTS: LevelOn}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	defer d.Close()
	assert.Contains(t, logs.String(), "serial "+a+": no modem-control lines (a pseudo-terminal?): DTR and RTS not set; HUPCL cleared")
	st := d.LineStatus()
	assert.Nil(t, st.Lines)
	assert.Contains(t, st.LinesNote, "not available")
	assert.Nil(t, st.Errors, "not zeros")
	assert.Equal(t, "not available on this device (no TIOCGICOUNT)", st.ErrorsNote)
}

func TestCarrierLossIsAnUnplug(t *testing.T) {
	_, a, _ := startCable(t, 0)
	m := &fakeModem{lines: ModemLines{DCD: true, DSR: true}}
	var logs testutil.LogBuffer
	d, err := NewWith(a, DefaultMode(), Options{Carrier: CarrierDCD, modem: m.get}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	defer d.Close()
	tr, err := d.Open(context.Background())
	require.NoError(t, err, "the carrier is up: Open returns at once")
	st := d.LineStatus()
	require.NotNil(t, st.Lines)
	assert.Equal(t, "DTR off, RTS off, DCD on, DSR on, CTS off, RI off", st.Lines.String())
	assert.Equal(t, "dcd", st.Carrier)

	readErr := make(chan error, 1)
	go func() {
		_, err := tr.Read(make([]byte, 16))
		readErr <- err
	}()
	time.Sleep(100 * time.Millisecond)
	dropped := time.Now()
	m.set(func(l *ModemLines) { l.DCD = false })
	select {
	case err := <-readErr:
		assert.ErrorIs(t, err, ErrDisconnected)
		assert.EqualError(t, err, "serial "+a+": device disconnected: carrier lost (DCD dropped)")
		took := time.Since(dropped)
		t.Logf("carrier loss noticed after %v", took)
		assert.Less(t, took, 100*time.Millisecond, "at once, not after a silence")
	case <-time.After(2 * time.Second):
		t.Fatal("Read did not fail when the carrier dropped")
	}
	_, err = tr.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrDisconnected, "writes fail too")
	require.NoError(t, tr.Close())

	// The reopen waits, port open, until the carrier is back.
	opened := make(chan error, 1)
	go func() {
		tr, err := d.Open(context.Background())
		if err == nil {
			_ = tr.Close()
		}
		opened <- err
	}()
	time.Sleep(400 * time.Millisecond)
	select {
	case err := <-opened:
		t.Fatalf("Open returned while the carrier was down: %v", err)
	default:
	}
	assert.Contains(t, logs.String(), "carrier (DCD) down: waiting for the far end")
	m.set(func(l *ModemLines) { l.DCD = true })
	select {
	case err := <-opened:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("Open did not return when the carrier came back")
	}
	assert.Contains(t, logs.String(), "carrier (DCD) up")
}

func TestCarrierWaitEnds(t *testing.T) {
	_, a, _ := startCable(t, 0)
	m := &fakeModem{lines: ModemLines{CTS: false}}
	d, err := NewWith(a, DefaultMode(), Options{Carrier: CarrierCTS, modem: m.get}, nil)
	require.NoError(t, err, "a carrier that is down at start is not a start-up error")
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = d.Open(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// A device that stops answering while the driver waits is lost: the
	// driver reopens it (and keeps waiting for the carrier).
	m.mu.Lock()
	m.err = errors.New("gone")
	m.mu.Unlock()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	_, err = d.Open(ctx2)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestErrorCountsAccumulateAcrossPorts(t *testing.T) {
	_, a, _ := startCable(t, 0)
	var mu sync.Mutex
	c := ErrorCounts{Frame: 100, Parity: 7, Break: 1}
	counts := func() (ErrorCounts, error) {
		mu.Lock()
		defer mu.Unlock()
		return c, nil
	}
	bump := func(f func(*ErrorCounts)) {
		mu.Lock()
		defer mu.Unlock()
		f(&c)
	}
	d, err := NewWith(a, DefaultMode(), Options{counts: counts}, nil)
	require.NoError(t, err)
	defer d.Close()
	tr, err := d.Open(context.Background())
	require.NoError(t, err)
	assert.Equal(t, &ErrorCounts{}, d.LineStatus().Errors, "counted from the open, not the driver's totals")
	bump(func(c *ErrorCounts) { c.Frame += 3; c.Parity += 2 })
	assert.Equal(t, &ErrorCounts{Frame: 3, Parity: 2}, d.LineStatus().Errors)
	require.NoError(t, tr.Close())
	assert.Equal(t, &ErrorCounts{Frame: 3, Parity: 2}, d.LineStatus().Errors, "kept while the port is closed")
	assert.Equal(t, "the port is not open", d.LineStatus().LinesNote)

	// A new port (an adapter replugged) whose driver counts from zero.
	bump(func(c *ErrorCounts) { *c = ErrorCounts{Break: 2, Overrun: 1} })
	tr, err = d.Open(context.Background())
	require.NoError(t, err)
	defer tr.Close()
	bump(func(c *ErrorCounts) { c.Frame++ })
	assert.Equal(t, &ErrorCounts{Frame: 4, Parity: 2}, d.LineStatus().Errors)
	assert.Equal(t, ErrorCounts{Frame: 5, Overrun: 1}, ErrorCounts{Frame: 5, Overrun: 3}.since(ErrorCounts{Overrun: 2}))
	assert.Equal(t, ErrorCounts{Frame: 1}, ErrorCounts{Frame: 1}.since(ErrorCounts{Frame: 9}), "a counter reset counts from zero")
}

func TestLowLatencyWritesLatencyTimer(t *testing.T) {
	c, a, _ := startCable(t, 0)
	dev, _ := c.Devices()
	root := t.TempDir()
	old := sysfsRoot
	sysfsRoot = root
	t.Cleanup(func() { sysfsRoot = old })

	// No latency_timer: not an FTDI adapter.
	p, err := OpenPortWith(a, DefaultMode(), Options{LowLatency: true})
	require.NoError(t, err)
	assert.Equal(t, []string{
		"latency_timer: not available (no " + filepath.Join(root, "bus/usb-serial/devices", filepath.Base(dev), "latency_timer") + ": not an FTDI USB adapter)",
		"ASYNC_LOW_LATENCY: not available (the driver has no TIOCGSERIAL)",
	}, p.LowLatencyReport())
	require.NoError(t, p.Close())

	dir := filepath.Join(root, "bus/usb-serial/devices", filepath.Base(dev))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	file := filepath.Join(dir, "latency_timer")
	require.NoError(t, os.WriteFile(file, []byte("16\n"), 0o644))
	var logs testutil.LogBuffer
	d, err := NewWith(a, DefaultMode(), Options{LowLatency: true}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	defer d.Close()
	got, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "1", string(got))
	assert.Contains(t, logs.String(), "serial "+a+": --low-latency: latency_timer: 16 → 1 ms ("+file+"); ASYNC_LOW_LATENCY: not available")

	// Already 1: nothing written, said so.
	assert.Equal(t, "latency_timer: already 1 ms ("+file+")", latencyTimer(a))

	// A latency_timer that cannot be read is reported, not fatal.
	require.NoError(t, os.Remove(file))
	require.NoError(t, os.Mkdir(file, 0o755))
	assert.Contains(t, latencyTimer(a), "latency_timer: cannot read "+file)
}

func TestUSBLowLatencyOff(t *testing.T) {
	_, a, _ := startCable(t, 0)
	p, err := OpenPortWith(a, DefaultMode(), Options{})
	require.NoError(t, err)
	defer p.Close()
	assert.Empty(t, p.LowLatencyReport(), "nothing done without --low-latency")
}
