//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sockmux/sockmux/internal/fakesys"
	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/serialport"
)

// fakeLink answers status requests on a control socket in dir as a link
// called name holding device would.
func fakeLink(t *testing.T, dir, name, device string) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(dir, name+".sock"))
	require.NoError(t, err)
	testutil.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			if _, err := r.ReadBytes('\n'); err != nil {
				return
			}
			resp, _ := json.Marshal(map[string]any{"status": map[string]any{"name": name, "pid": 4242, "device": device}})
			if _, err := c.Write(append(resp, '\n')); err != nil {
				return
			}
		}
	})
}

// TestPortsListing: sockmux ports on a fake sysfs whose ttyS0 is a
// pseudo-terminal held at 57600 by a (fake) link: the listing shows the
// link, leaves the speed alone and opens nothing.
func TestPortsListing(t *testing.T) {
	master, slave, err := pty.Open()
	require.NoError(t, err)
	defer master.Close()
	defer slave.Close()
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS2)
	require.NoError(t, err)
	tio.Cflag = tio.Cflag&^unix.CBAUD | unix.BOTHER
	tio.Ispeed, tio.Ospeed = 57600, 57600
	require.NoError(t, unix.IoctlSetTermios(int(slave.Fd()), unix.TCSETS2, tio))

	tree, err := fakesys.New(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, tree.AddUART("ttyS0", 4, slave.Name()))
	require.NoError(t, tree.AddUART("ttyS3", 0, ""))
	require.NoError(t, tree.AddUSBSerial("ttyUSB0", fakesys.USB{Port: "1-2", VID: "0403", PID: "6001", Serial: "A10K3ZP", Manufacturer: "FTDI", Product: "FT232R USB UART"}, ""))
	require.NoError(t, tree.AddUSBSerial("ttyUSB1", fakesys.USB{Port: "1-4", VID: "1a86", PID: "7523", Manufacturer: "QinHeng Electronics", Product: "USB Serial"}, ""))
	require.NoError(t, tree.AddACM("ttyACM0", fakesys.USB{Port: "1-3", VID: "2341", PID: "0043", Manufacturer: "Arduino", Product: "Uno"}, ""))
	require.NoError(t, tree.AddACM("ttyACM1", fakesys.USB{Port: "1-5", VID: "2341", PID: "0043", Manufacturer: "Arduino", Product: "Uno"}, ""))
	sockDir, err := os.MkdirTemp("", "smxp")
	require.NoError(t, err)
	defer os.RemoveAll(sockDir)
	fakeLink(t, sockDir, "lab", slave.Name())
	fakeLink(t, sockDir, "other", "/dev/pts/nonexistent")

	ino, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(ino)
	_, err = unix.InotifyAddWatch(ino, slave.Name(), unix.IN_OPEN)
	require.NoError(t, err)

	rows, err := listPorts(serialport.System{SysRoot: tree.Sys, DevRoot: tree.Dev}, []string{sockDir, filepath.Join(sockDir, "missing")})
	require.NoError(t, err)

	buf := make([]byte, 4096)
	n, _ := unix.Read(ino, buf)
	assert.LessOrEqual(t, n, 0, "listing opened the device node")
	tio, err = unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS2)
	require.NoError(t, err)
	assert.Equal(t, uint32(57600), tio.Ospeed, "listing changed the speed of a port in use")

	var out bytes.Buffer
	require.NoError(t, printPortsTable(&out, rows))
	table := out.String()
	dev := func(n string) string { return filepath.Join(tree.Dev, n) }
	lines := strings.Split(strings.TrimSpace(table), "\n")
	require.Len(t, lines, 6, table)
	assert.Regexp(t, `^PORT +DRIVER +DESCRIPTION +IN USE BY +--comm$`, lines[0])
	assert.Regexp(t, "^"+dev("ttyACM0")+` +cdc_acm +Arduino Uno +- +`+dev("serial/by-id/usb-Arduino_Uno-if00")+"$", lines[1], "two Unos without serial numbers: the by-id link")
	assert.Regexp(t, "^"+dev("ttyACM1")+` +cdc_acm +Arduino Uno +- +`+dev("ttyACM1")+"$", lines[2], "and the other one's path")
	assert.Regexp(t, "^"+dev("ttyS0")+` +serial8250 +16550A UART +link "lab" \(pid 4242\) +`+dev("ttyS0")+"$", lines[3])
	assert.Regexp(t, "^"+dev("ttyUSB0")+` +ftdi_sio +FTDI FT232R USB UART +- +usb:0403:6001:A10K3ZP$`, lines[4])
	assert.Regexp(t, "^"+dev("ttyUSB1")+` +ftdi_sio +QinHeng Electronics USB Serial +- +usb:1a86:7523$`, lines[5])
	assert.NotContains(t, table, "ttyS3")

	out.Reset()
	require.NoError(t, printPortsJSON(&out, rows))
	var js []map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &js))
	require.Len(t, js, 5)
	assert.Equal(t, "usb:0403:6001:A10K3ZP", js[3]["comm"])
	assert.Equal(t, "A10K3ZP", js[3]["serial_number"])
	assert.Equal(t, dev("serial/by-id/usb-FTDI_FT232R_USB_UART_A10K3ZP-if00-port0"), js[3]["by_id"])
	assert.Equal(t, []any{map[string]any{"name": "lab", "pid": float64(4242)}}, js[2]["held_by"])
	assert.Equal(t, "16550A", js[2]["uart"])
}

func TestPortsListingEmpty(t *testing.T) {
	tree, err := fakesys.New(t.TempDir())
	require.NoError(t, err)
	rows, err := listPorts(serialport.System{SysRoot: tree.Sys, DevRoot: tree.Dev}, []string{t.TempDir()})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, printPortsTable(&out, rows))
	assert.Equal(t, "no serial ports found\n", out.String())
	out.Reset()
	require.NoError(t, printPortsJSON(&out, rows))
	assert.Equal(t, "[]\n", out.String())
}
