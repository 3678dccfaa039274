package serialport

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/sockmux/sockmux/internal/fdctl"
	"golang.org/x/sys/unix"
)

// sysfsRoot is where sysfs is mounted; tests point it at a fake tree.
var sysfsRoot = "/sys"

// asyncLowLatency is ASYNC_LOW_LATENCY of <linux/tty_flags.h>.
const asyncLowLatency = 1 << 13

// serialStruct is Linux's struct serial_struct (TIOCGSERIAL, TIOCSSERIAL).
// Go lays it out as C does on every Linux platform.
type serialStruct struct {
	Type          int32
	Line          int32
	Port          uint32
	IRQ           int32
	Flags         int32
	XmitFifoSize  int32
	CustomDivisor int32
	BaudBase      int32
	CloseDelay    uint16
	IOType        uint8
	ReservedChar  [1]uint8
	Hub6          int32
	ClosingWait   uint16
	ClosingWait2  uint16
	IomemBase     uintptr
	IomemRegShift uint16
	PortHigh      uint32
	IomapBase     uintptr
}

// setLowLatency asks the device for low receive latency in the two ways
// Linux has, and says what each did: the FTDI driver's latency_timer in
// sysfs (16 ms by default; set to 1), and the ASYNC_LOW_LATENCY flag via
// TIOCSSERIAL (which the FTDI driver also maps to a 1 ms timer).
func (p *Port) setLowLatency() []string {
	return []string{latencyTimer(p.path), p.asyncLowLatency()}
}

// latencyTimer sets /sys/bus/usb-serial/devices/NAME/latency_timer to 1,
// NAME being the device the path resolves to (ttyUSB0).
func latencyTimer(path string) string {
	dev := path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		dev = real
	}
	name := filepath.Base(dev)
	file := filepath.Join(sysfsRoot, "bus", "usb-serial", "devices", name, "latency_timer")
	old, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("latency_timer: not available (no %s: not an FTDI USB adapter)", file)
	}
	if err != nil {
		return fmt.Sprintf("latency_timer: cannot read %s: %v", file, err)
	}
	was := strings.TrimSpace(string(old))
	if was == "1" {
		return fmt.Sprintf("latency_timer: already 1 ms (%s)", file)
	}
	if err := os.WriteFile(file, []byte("1"), 0); err != nil {
		hint := ""
		if errors.Is(err, fs.ErrPermission) {
			hint = ` (needs root, or a udev rule: ACTION=="add", SUBSYSTEM=="usb-serial", DRIVER=="ftdi_sio", ATTR{latency_timer}="1")`
		}
		return fmt.Sprintf("latency_timer: cannot set %s to 1 (it is %s ms): %v%s", file, was, pathErr(err), hint)
	}
	return fmt.Sprintf("latency_timer: %s → 1 ms (%s)", was, file)
}

// asyncLowLatency sets ASYNC_LOW_LATENCY with TIOCGSERIAL and TIOCSSERIAL.
func (p *Port) asyncLowLatency() string {
	var ss serialStruct
	ioctl := func(req uint) error {
		return fdctl.Control(p.sys.f, func(fd int) error {
			_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&ss)))
			if e != 0 {
				return e
			}
			return nil
		})
	}
	if err := ioctl(unix.TIOCGSERIAL); err != nil {
		if isNoModem(err) {
			return "ASYNC_LOW_LATENCY: not available (the driver has no TIOCGSERIAL)"
		}
		return "ASYNC_LOW_LATENCY: TIOCGSERIAL failed: " + err.Error()
	}
	if ss.Flags&asyncLowLatency != 0 {
		return "ASYNC_LOW_LATENCY: already set"
	}
	ss.Flags |= asyncLowLatency
	if err := ioctl(unix.TIOCSSERIAL); err != nil {
		if isNoModem(err) {
			return "ASYNC_LOW_LATENCY: not available (the driver refuses TIOCSSERIAL)"
		}
		return "ASYNC_LOW_LATENCY: TIOCSSERIAL failed: " + err.Error()
	}
	return "ASYNC_LOW_LATENCY: set"
}

// pathErr is the operating system's reason in err, without the path.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
