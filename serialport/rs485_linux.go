package serialport

import (
	"unsafe"

	"github.com/sockmux/sockmux/internal/fdctl"
	"golang.org/x/sys/unix"
)

// serialRS485 is Linux's struct serial_rs485 (TIOCSRS485), 32 bytes.
type serialRS485 struct {
	Flags              uint32
	DelayRTSBeforeSend uint32 // milliseconds
	DelayRTSAfterSend  uint32
	Padding            [5]uint32
}

// The flags of struct serial_rs485.
const (
	serRS485Enabled      = 1 << 0
	serRS485RTSOnSend    = 1 << 1
	serRS485RTSAfterSend = 1 << 2
	serRS485RxDuringTx   = 1 << 4
)

// kernelRS485 is what r asks of the kernel.
func kernelRS485(r RS485) serialRS485 {
	k := serialRS485{
		Flags:              serRS485Enabled,
		DelayRTSBeforeSend: uint32(r.DelayBefore.Milliseconds()),
		DelayRTSAfterSend:  uint32(r.DelayAfter.Milliseconds()),
	}
	if r.RTSLowOnSend {
		k.Flags |= serRS485RTSAfterSend
	} else {
		k.Flags |= serRS485RTSOnSend
	}
	if r.RxDuringTx {
		k.Flags |= serRS485RxDuringTx
	}
	return k
}

// setRS485 switches the port into the kernel's RS-485 mode.
func (p *Port) setRS485(r RS485) error {
	k := kernelRS485(r)
	err := fdctl.Control(p.sys.f, func(fd int) error {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TIOCSRS485), uintptr(unsafe.Pointer(&k)))
		if e != 0 {
			return e
		}
		return nil
	})
	if err != nil {
		msg := "cannot switch to RS-485 mode (TIOCSRS485: " + err.Error() + ")"
		if isNoModem(err) {
			msg = "the port's driver has no RS-485 mode (TIOCSRS485 refused); an adapter with automatic direction control needs only --half-duplex"
		}
		return newError(p.path, ErrUnsupported, msg, err)
	}
	return nil
}
