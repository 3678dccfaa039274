//go:build linux

package serialport

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sockmux/sockmux/internal/fakesys"
	"github.com/sockmux/sockmux/internal/testutil"
)

var (
	ftdi  = fakesys.USB{Port: "1-2", VID: "0403", PID: "6001", Serial: "A10K3ZP", Manufacturer: "FTDI", Product: "FT232R USB UART"}
	ch340 = fakesys.USB{Port: "1-2", VID: "1a86", PID: "7523", Manufacturer: "QinHeng Electronics", Product: "USB Serial"}
	uno   = fakesys.USB{Port: "1-3", VID: "2341", PID: "0043", Serial: "8573531303235171E0A1", Manufacturer: "Arduino (www.arduino.cc)", Product: "Arduino Uno"}
)

// newTree makes a fake sysfs and /dev: a 16550A ttyS0, a ttyS3 with no
// UART, a virtual console, an FTDI adapter at ttyUSB0 whose node is
// usbNode (a placeholder if empty) and an Arduino at ttyACM0.
func newTree(t *testing.T, usbNode string) (*fakesys.Tree, System) {
	t.Helper()
	tree, err := fakesys.New(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, tree.AddUART("ttyS0", 4, ""))
	require.NoError(t, tree.AddUART("ttyS3", 0, ""))
	require.NoError(t, tree.AddVirtual("tty0"))
	require.NoError(t, tree.AddUSBSerial("ttyUSB0", ftdi, usbNode))
	require.NoError(t, tree.AddACM("ttyACM0", uno, ""))
	return tree, System{SysRoot: tree.Sys, DevRoot: tree.Dev}
}

func TestListReadsSysfs(t *testing.T) {
	tree, sys := newTree(t, "")
	ports, err := sys.List()
	require.NoError(t, err)
	dev := func(n string) string { return filepath.Join(tree.Dev, n) }
	assert.Equal(t, []PortInfo{
		{Name: dev("ttyACM0"), IsUSB: true, VID: "2341", PID: "0043", SerialNumber: "8573531303235171E0A1",
			Manufacturer: "Arduino (www.arduino.cc)", Product: "Arduino Uno", Driver: "cdc_acm",
			ByID:   dev("serial/by-id/usb-Arduino_(www.arduino.cc)_Arduino_Uno_8573531303235171E0A1-if00"),
			ByPath: dev("serial/by-path/pci-0000:00:14.0-usb-0:3:1.0")},
		{Name: dev("ttyS0"), Driver: "serial8250", UART: "16550A"},
		{Name: dev("ttyUSB0"), IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A10K3ZP",
			Manufacturer: "FTDI", Product: "FT232R USB UART", Driver: "ftdi_sio",
			ByID:   dev("serial/by-id/usb-FTDI_FT232R_USB_UART_A10K3ZP-if00-port0"),
			ByPath: dev("serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0")},
	}, ports, "ttyS3 (UART type 0) and tty0 (no device) are not serial ports")
	assert.Equal(t, "usb:0403:6001:A10K3ZP", ports[2].Identity().String())
	assert.True(t, ports[1].Identity().IsZero())
	assert.Equal(t, "FTDI FT232R USB UART", ports[2].Description())
	assert.Equal(t, "16550A UART", ports[1].Description())
}

func TestListWithoutSysfs(t *testing.T) {
	_, err := System{SysRoot: filepath.Join(t.TempDir(), "nothing")}.List()
	assert.ErrorContains(t, err, "listing serial ports")
}

// watchOpens reports every open of the file at path from now on
// (inotify IN_OPEN), to prove that code under test opens nothing there.
func watchOpens(t *testing.T, path string) func() int {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Close(fd) })
	_, err = unix.InotifyAddWatch(fd, path, unix.IN_OPEN)
	require.NoError(t, err)
	total := 0
	return func() int {
		buf := make([]byte, 4096)
		for {
			n, err := unix.Read(fd, buf)
			if n <= 0 || err != nil {
				return total
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafePointer(buf[off:]))
				total++
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

// TestListLeavesAPortInUseAlone: a port held at 57600 keeps its speed
// while it is listed and looked up, and nothing opens its device node.
func TestListLeavesAPortInUseAlone(t *testing.T) {
	c, a, _ := startCable(t, 0)
	held := mustOpen(t, a, Mode{Baud: 57600})
	pts, _ := c.Devices()
	tree, err := fakesys.New(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, tree.AddUART("ttyS1", 4, a))
	require.NoError(t, tree.AddUART("ttyS5", 0, a))
	sys := System{SysRoot: tree.Sys, DevRoot: tree.Dev}
	opens := watchOpens(t, pts)

	ports, err := sys.List()
	require.NoError(t, err)
	require.Len(t, ports, 1)
	assert.Equal(t, filepath.Join(tree.Dev, "ttyS1"), ports[0].Name)
	_, ok := sys.lookupPath(filepath.Join(tree.Dev, "ttyS1"))
	assert.True(t, ok)
	assert.True(t, IsSerial(filepath.Join(tree.Dev, "ttyS1")))

	assert.Zero(t, opens(), "listing opened the device node")
	speed, ok := actualSpeed(held.sys.f)
	require.True(t, ok)
	assert.Equal(t, 57600, speed, "listing changed the speed of a port in use")

	// The watch does see an open, so the zero above means something.
	f, err := os.OpenFile(pts, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	require.NoError(t, err)
	f.Close()
	assert.Equal(t, 1, opens())
}

func TestParseIdentity(t *testing.T) {
	for in, want := range map[string]Identity{
		"usb:0403:6001:A10K3ZP": {VID: "0403", PID: "6001", Serial: "A10K3ZP"},
		"usb:0403:6001":         {VID: "0403", PID: "6001"},
		"usb:1A86:7523":         {VID: "1a86", PID: "7523"},
		"usb:0403:6001:a:b":     {VID: "0403", PID: "6001", Serial: "a:b"},
		"serial:A10K3ZP":        {Serial: "A10K3ZP"},
	} {
		id, err := ParseIdentity(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, id, in)
	}
	assert.Equal(t, "usb:1a86:7523", Identity{VID: "1a86", PID: "7523"}.String())
	for in, msg := range map[string]string{
		"usb:":           "want a vendor and a product ID",
		"usb:0403":       "want a vendor and a product ID",
		"usb:403:6001":   `the vendor ID "403" is not 4 hexadecimal digits`,
		"usb:0403:60g1":  `the product ID "60g1" is not 4 hexadecimal digits`,
		"usb:0403:6001:": "the serial number after the product ID is empty",
		"serial:":        "the serial number is empty",
		"/dev/ttyUSB0":   `starts with neither "usb:" nor "serial:"`,
	} {
		_, err := ParseIdentity(in)
		assert.ErrorContains(t, err, msg, in)
		assert.ErrorContains(t, err, "usb:VID:PID:SERIAL", in)
	}
}

func TestFindIdentity(t *testing.T) {
	_, sys := newTree(t, "")
	ports, err := sys.List()
	require.NoError(t, err)
	for _, s := range []string{"usb:0403:6001:A10K3ZP", "usb:0403:6001", "serial:A10K3ZP"} {
		id, err := ParseIdentity(s)
		require.NoError(t, err)
		p, err := Find(ports, id)
		require.NoError(t, err, s)
		assert.Equal(t, "ttyUSB0", filepath.Base(p.Name), s)
	}

	id, _ := ParseIdentity("usb:0403:6001:NOPE")
	_, err = Find(ports, id)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.ErrorContains(t, err, "serial usb:0403:6001:NOPE: no such adapter plugged in; present: ")
	assert.ErrorContains(t, err, "ttyUSB0 usb:0403:6001:A10K3ZP (FTDI FT232R USB UART)")
	assert.ErrorContains(t, err, "ttyS0, ")

	_, err = Find(nil, id)
	assert.ErrorContains(t, err, "no serial ports present")

	two := append(ports, PortInfo{Name: "/dev/ttyUSB1", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "B20"})
	id, _ = ParseIdentity("usb:0403:6001")
	_, err = Find(two, id)
	assert.ErrorIs(t, err, ErrAmbiguous)
	assert.ErrorContains(t, err, "2 adapters match: ")
	assert.ErrorContains(t, err, "/dev/ttyUSB1 usb:0403:6001:B20")
}

func TestNewWithUnknownIdentity(t *testing.T) {
	_, sys := newTree(t, "")
	_, err := sys.New("usb:0403:6015:XYZ", DefaultMode(), nil)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.ErrorContains(t, err, "serial usb:0403:6015:XYZ: no such adapter plugged in; present: ")
	assert.ErrorContains(t, err, "usb:2341:0043:8573531303235171E0A1 (Arduino (www.arduino.cc) Arduino Uno)")

	_, err = sys.New("usb:0403", DefaultMode(), nil)
	assert.ErrorContains(t, err, `device identity "usb:0403": want a vendor and a product ID`)
}

// roundTrip checks that bytes written to the transport come out at the
// far end of the cable.
func roundTrip(t *testing.T, tr interface{ Write([]byte) (int, error) }, far string) {
	t.Helper()
	p := mustOpen(t, far, DefaultMode())
	_, err := tr.Write([]byte("hello"))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(readN(t, p, 5)))
	require.NoError(t, p.Close())
}

// TestIdentityFollowsReplug: the adapter comes back as ttyUSB1 (with its
// by-id link), on another pseudo-terminal, and the driver opens it there,
// whether it was given the identity or the by-id path.
func TestIdentityFollowsReplug(t *testing.T) {
	for _, spec := range []string{"usb:0403:6001:A10K3ZP", "serial:A10K3ZP", "by-id"} {
		t.Run(spec, func(t *testing.T) {
			_, a1, b1 := startCable(t, 0)
			_, a2, b2 := startCable(t, 0)
			tree, sys := newTree(t, a1)
			if spec == "by-id" {
				spec = tree.ByID("ttyUSB0")
				require.NotEmpty(t, spec)
			}
			var logs testutil.LogBuffer
			d, err := sys.New(spec, DefaultMode(), slog.New(slog.NewTextHandler(&logs, nil)))
			require.NoError(t, err)
			defer d.Close()
			tr, err := d.Open(context.Background())
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(tree.Dev, "ttyUSB0"), d.Device())
			roundTrip(t, tr, b1)
			require.NoError(t, tr.Close())

			// Unplug; replug as ttyUSB1.
			require.NoError(t, tree.Remove("ttyUSB0"))
			done := make(chan struct{})
			var tr2 interface {
				Write([]byte) (int, error)
				Close() error
			}
			go func() {
				defer close(done)
				tr2, err = d.Open(context.Background())
			}()
			time.Sleep(300 * time.Millisecond)
			require.NoError(t, tree.AddUSBSerial("ttyUSB1", ftdi, a2))
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the driver did not follow the adapter to ttyUSB1")
			}
			require.NoError(t, err)
			defer tr2.Close()
			assert.Equal(t, filepath.Join(tree.Dev, "ttyUSB1"), d.Device())
			roundTrip(t, tr2, b2)
			assert.Contains(t, logs.String(), "lost: no such device; waiting")
			assert.Contains(t, logs.String(), "reopened at "+filepath.Join(tree.Dev, "ttyUSB1"))
		})
	}
}

// TestOtherAdapterAtPathRefused: given a plain path, the driver refuses a
// different adapter that appears there, says so once, never opens it, and
// opens the first adapter again when it is back.
func TestOtherAdapterAtPathRefused(t *testing.T) {
	_, a1, b1 := startCable(t, 0)
	c, a2, _ := startCable(t, 0)
	pts2, _ := c.Devices()
	tree, sys := newTree(t, a1)
	path := filepath.Join(tree.Dev, "ttyUSB0")
	var logs testutil.LogBuffer
	d, err := sys.New(path, DefaultMode(), slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	defer d.Close()
	tr, err := d.Open(context.Background())
	require.NoError(t, err)
	require.NoError(t, tr.Close())

	require.NoError(t, tree.Remove("ttyUSB0"))
	require.NoError(t, tree.AddUSBSerial("ttyUSB0", ch340, a2))
	opens := watchOpens(t, pts2)
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	_, err = d.Open(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Zero(t, opens(), "the driver opened the other adapter")
	want := "serial " + path + ": expected adapter usb:0403:6001:A10K3ZP (FTDI FT232R USB UART), found usb:1a86:7523 (QinHeng Electronics USB Serial); not opening it. " +
		"To use the adapter found, start sockmux with --comm usb:1a86:7523; to follow the expected one wherever it is plugged in, with --comm usb:0403:6001:A10K3ZP"
	assert.Equal(t, 1, bytes.Count([]byte(logs.String()), []byte(want)), "logged once:\n%s", logs.String())
	assert.Contains(t, logs.String(), "lost: a different adapter is plugged in; waiting")

	// The first adapter is back at the path: it is opened.
	require.NoError(t, tree.Remove("ttyUSB0"))
	require.NoError(t, tree.AddUSBSerial("ttyUSB0", ftdi, a1))
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	tr, err = d.Open(ctx2)
	require.NoError(t, err)
	defer tr.Close()
	roundTrip(t, tr, b1)
}

func TestRefusalIsOtherDevice(t *testing.T) {
	err := newError("/dev/ttyUSB0", ErrOtherDevice, "x", nil)
	assert.True(t, errors.Is(err, ErrOtherDevice))
	assert.Equal(t, "a different adapter is plugged in", lostReason(err))
}
