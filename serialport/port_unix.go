//go:build linux || darwin || freebsd || openbsd

package serialport

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/sockmux/sockmux/internal/fdctl"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// portSys is the Unix part of a Port.
//
// The port has two descriptors for the device. go.bug.st/serial's configures
// the line (raw mode, speed, framing, the exclusive-use flag) and is kept open
// only to hold that state; all I/O goes through f, a non-blocking descriptor.
// On macOS and the BSDs f is in Go's runtime poller, so that Close interrupts
// a blocked Read or Write and timeouts need no extra threads (port_poller.go).
// On Linux it is not: the poller would wake the process each time the line
// took or brought a few bytes, whoever waits for them; a Read or Write there
// tries the descriptor first and waits, only when it must, in poll(2) on it
// and on a wake-up descriptor that Close signals (port_io_linux.go).
type portSys struct {
	f   *os.File
	io  portIO // the I/O waits: per operating system
	sp  serial.Port
	fi  os.FileInfo // the device as opened, to notice it vanish or change
	pty bool        // a Linux pseudo-terminal: TIOCOUTQ always reads 0
	// watch, when set, reports the device node's removal (Linux:
	// nodewatch_linux.go), and blocked I/O needs no poll deadline.
	watch *nodeWatch
}

func openPort(path string, m Mode, o Options) (*Port, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, openError(path, err)
	}
	if err := checkDeviceType(path, fi); err != nil {
		return nil, err
	}
	f, pio, err := openDevice(path)
	if err != nil {
		return nil, openError(path, err)
	}
	p := &Port{path: path, mode: m}
	p.sys.f = f
	p.sys.io = pio
	p.ext.opts = o
	ok := false
	defer func() {
		if !ok {
			p.sys.io.close()
			_ = f.Close()
			if p.sys.sp != nil {
				_ = p.sys.sp.Close()
			}
		}
	}()

	if err := fdctl.Control(f, func(fd int) error {
		_, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
		return err
	}); err != nil {
		return nil, newError(path, ErrNotSerial, "not a serial device: a character device that is not a terminal", err)
	}
	// Exclusive use. TIOCEXCL (set by serial.Open below) stops other
	// processes from opening the device but does not apply to root; an
	// advisory lock, as picocom and other sockmux instances take, does.
	if err := fdctl.Control(f, func(fd int) error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) }); errors.Is(err, unix.EWOULDBLOCK) {
		return nil, busyError(path, err)
	}

	sp, err := serial.Open(path, toSerialMode(m))
	if err != nil {
		return nil, serialOpenError(path, m, err)
	}
	p.sys.sp = sp

	if actual, ok := actualSpeed(f); ok && !speedClose(actual, m.Baud) {
		return nil, newError(path, ErrUnsupported, fmt.Sprintf("baud rate %d not supported: the device runs at %d instead", m.Baud, actual), nil)
	}
	if err := setFlowControl(f, m.Flow == FlowRTSCTS); err != nil {
		return nil, newError(path, ErrUnsupported, "cannot set flow control "+m.Flow+": "+err.Error(), err)
	}
	// DTR and RTS as Options say (raised by default: many adapters and
	// modems wait for them), HUPCL as they need (lines_unix.go).
	if err := p.setupLines(); err != nil {
		return nil, err
	}
	if o.LowLatency {
		p.ext.lowLat = p.setLowLatency()
	}
	if o.RS485 != nil {
		if err := p.setRS485(*o.RS485); err != nil {
			return nil, err
		}
		p.ext.rs485 = o.RS485.String()
	}
	// Drop whatever arrived while nobody had the port open, as a UART whose
	// receiver was off would have.
	_ = sp.ResetInputBuffer()

	if st, err := f.Stat(); err == nil {
		p.sys.fi = st
		p.sys.pty = isLinuxPty(st)
	}
	p.startLines()
	p.startNodeWatch()
	ok = true
	return p, nil
}

// ioDeadline is the deadline for one wait of a Read or Write in the
// poller: none when the node watch reports the device's removal, else
// pollInterval from now, to check the node then.
func (p *Port) ioDeadline() time.Time {
	if p.sys.watch != nil {
		return time.Time{}
	}
	return time.Now().Add(pollInterval)
}

// lostErr returns why the port is lost before the OS says so: the carrier
// dropped or the node watch found the device node gone.
func (p *Port) lostErr() error {
	if err := p.carrierLost(); err != nil {
		return err
	}
	return p.nodeGone()
}

// checkDeviceType rejects paths that are plainly not serial devices.
func checkDeviceType(path string, fi os.FileInfo) error {
	mode := fi.Mode()
	what := ""
	switch {
	case mode.IsDir():
		what = "a directory"
	case mode.IsRegular():
		what = "a regular file"
	case mode&fs.ModeNamedPipe != 0:
		what = "a named pipe (use it with the pipe transport)"
	case mode&fs.ModeSocket != 0:
		what = "a socket"
	case mode&fs.ModeDevice != 0 && mode&fs.ModeCharDevice == 0:
		what = "a block device"
	case mode&fs.ModeCharDevice == 0:
		what = "not a device"
	}
	if what != "" {
		return newError(path, ErrNotSerial, "not a serial device: it is "+what, nil)
	}
	return nil
}

// openError classifies an error from stat or open.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
		return notFoundError(path, err)
	case errors.Is(err, fs.ErrPermission):
		return permissionError(path, err)
	case errors.Is(err, unix.EBUSY):
		return busyError(path, err)
	case errors.Is(err, unix.EISDIR):
		return newError(path, ErrNotSerial, "not a serial device: it is a directory", err)
	}
	return newError(path, ErrNotSerial, "cannot open: "+err.Error(), err)
}

func setFlowControl(f *os.File, on bool) error {
	return fdctl.Control(f, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
		if err != nil {
			return err
		}
		if on {
			t.Cflag |= unix.CRTSCTS
		} else {
			t.Cflag &^= unix.CRTSCTS
		}
		return unix.IoctlSetTermios(fd, ioctlSetTermios, t)
	})
}

// OutputQueued returns how many written bytes the operating system still
// holds for sending (TIOCOUTQ). It implements link.OutputQueuer.
//
// On a Linux pseudo-terminal (such as an end of "sockmux cable") the kernel
// keeps no output queue of its own and TIOCOUTQ always reads 0, so
// OutputQueued fails with ErrUnsupported there rather than report an empty
// queue; the Driver does not offer OutputQueued for such a port at all.
func (p *Port) OutputQueued() (int, error) {
	if p.closed.Load() {
		return 0, p.closedErr()
	}
	if p.sys.pty {
		return 0, newError(p.path, ErrUnsupported, "output queue length is not available on a Linux pseudo-terminal", nil)
	}
	var n int
	err := fdctl.Control(p.sys.f, func(fd int) error {
		var err error
		n, err = unix.IoctlGetInt(fd, unix.TIOCOUTQ)
		return err
	})
	if err != nil {
		return 0, p.ioError("TIOCOUTQ", err)
	}
	return n, nil
}

// hasOutputQueue reports whether OutputQueued can work on this port.
func (p *Port) hasOutputQueue() bool { return !p.sys.pty }

// Close closes the port and unblocks a pending Read or Write. Closing a
// device that went away is not an error; Close returns nil.
func (p *Port) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	p.stopLines()
	p.stopNodeWatch()
	p.sys.io.wake()     // wakes blocked I/O
	_ = p.sys.f.Close() // releases the flock once no I/O uses it
	p.setMu.Lock()      // not while SetSpeed uses the descriptors
	_ = p.sys.sp.Close()
	p.setMu.Unlock()
	p.sys.io.close()
	return nil
}

// checkNode fails when the device node is gone or now names another device,
// which is how a vanished USB adapter or pseudo-terminal may show.
func (p *Port) checkNode() error {
	fi, err := os.Stat(p.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return newError(p.path, ErrDisconnected, "device disconnected: the device node is gone", err)
		}
		return nil
	}
	if p.sys.fi != nil && !os.SameFile(fi, p.sys.fi) {
		return newError(p.path, ErrDisconnected, "device disconnected: the path now names another device", nil)
	}
	return nil
}

// ioError classifies an error from I/O on the open port.
func (p *Port) ioError(op string, err error) error {
	if p.closed.Load() || errors.Is(err, os.ErrClosed) {
		return p.closedErr()
	}
	if errors.Is(err, io.EOF) {
		// A hang-up, not the peer closing anything: keep io.EOF out of the
		// chain so that the link does not take it for a clean end.
		return newError(p.path, ErrDisconnected, "device disconnected: "+op+": hang-up", nil)
	}
	return newError(p.path, ErrDisconnected, "device disconnected: "+op+": "+errMsg(err), err)
}

// IsSerial reports whether path names a serial device (a terminal device:
// a UART, a USB serial adapter, a pseudo-terminal), as opposed to a named
// pipe or a regular file. It does not open the device. A path that does not
// exist counts as serial when it is named like one (/dev/tty*, /dev/cu*,
// /dev/serial/..., /dev/rfcomm*), so that an unplugged adapter gets a clear
// "no such device" from New rather than being taken for a pipe. A USB
// adapter's identity (usb:..., serial:..., see Identity) counts as serial.
func IsSerial(path string) bool {
	if IsIdentity(path) {
		return true
	}
	fi, err := os.Stat(path)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist) && namedLikeSerial(path)
	}
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	return isTTYDevice(path, fi)
}

func namedLikeSerial(path string) bool {
	for _, prefix := range []string{"/dev/tty", "/dev/cu", "/dev/serial/", "/dev/rfcomm"} {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// speedNow reads back the speed the port runs at, where the operating
// system tells (Linux).
func (p *Port) speedNow() (int, bool) { return actualSpeed(p.sys.f) }

// probeSpeeds: AcceptedSpeeds tries each rate on the open port.
const probeSpeeds = true
