//go:build darwin || freebsd || openbsd

package cable

import (
	"os"

	"github.com/sockmux/sockmux/internal/fdctl"
	"golang.org/x/sys/unix"
)

// followsRates is true where the cable can read and set the speed of its
// pseudo-terminals.
const followsRates = true

// endSpeed reads the output speed the program using f's terminal set.
func endSpeed(f *os.File) (int, error) {
	var speed int
	err := fdctl.Control(f, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
		if err != nil {
			return err
		}
		speed = int(t.Ospeed)
		return nil
	})
	return speed, err
}

// setEndSpeed sets both speeds of f's terminal to baud.
func setEndSpeed(f *os.File, baud int) error {
	return fdctl.Control(f, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
		if err != nil {
			return err
		}
		setSpeedField(&t.Ispeed, baud)
		setSpeedField(&t.Ospeed, baud)
		return unix.IoctlSetTermios(fd, ioctlSetTermios, t)
	})
}

// setSpeedField stores baud in a termios speed field, whose type differs
// between the BSDs.
func setSpeedField[T ~uint64 | ~uint32 | ~int32](dst *T, baud int) { *dst = T(baud) }
