package serialport

import (
	"unsafe"

	"github.com/sockmux/sockmux/internal/fdctl"
	"golang.org/x/sys/unix"
)

// serialIcounter is Linux's struct serial_icounter_struct (TIOCGICOUNT).
type serialIcounter struct {
	CTS, DSR, RNG, DCD int32
	RX, TX             int32
	Frame, Overrun     int32
	Parity, Brk        int32
	BufOverrun         int32
	Reserved           [9]int32
}

// readDriverCounts reads the driver's receive error counters with
// TIOCGICOUNT. UART drivers and most USB serial drivers (FTDI, CP210x,
// PL2303, CH341) have it; pseudo-terminals and CDC-ACM devices do not.
func (p *Port) readDriverCounts() (ErrorCounts, error) {
	var ic serialIcounter
	err := fdctl.Control(p.sys.f, func(fd int) error {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGICOUNT, uintptr(unsafe.Pointer(&ic)))
		if e != 0 {
			return e
		}
		return nil
	})
	if err != nil {
		return ErrorCounts{}, err
	}
	u := func(v int32) uint64 { return uint64(uint32(v)) }
	return ErrorCounts{Frame: u(ic.Frame), Parity: u(ic.Parity), Overrun: u(ic.Overrun), BufferOverrun: u(ic.BufOverrun), Break: u(ic.Brk)}, nil
}
