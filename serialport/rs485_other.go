//go:build !linux

package serialport

import (
	"errors"
	"runtime"
)

// setRS485 refuses: the kernel's RS-485 mode is Linux's.
func (p *Port) setRS485(RS485) error {
	return newError(p.path, ErrUnsupported, "RS-485 mode (--rs485) is Linux only, not on "+runtime.GOOS+"; an adapter with automatic direction control needs only --half-duplex", errors.ErrUnsupported)
}
