//go:build linux && !ppc && !ppc64 && !ppc64le

package cable

import (
	"os"

	"github.com/sockmux/sockmux/internal/fdctl"
	"golang.org/x/sys/unix"
)

// followsRates is true where the cable can read and set the speed of its
// pseudo-terminals.
const followsRates = true

// endSpeed reads the output speed the program using f's terminal set
// (termios2: any rate, not only the Bnnn ones).
func endSpeed(f *os.File) (int, error) {
	var speed int
	err := fdctl.Control(f, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS2)
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
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS2)
		if err != nil {
			return err
		}
		t.Cflag &^= unix.CBAUD | unix.CBAUD<<unix.IBSHIFT
		t.Cflag |= unix.BOTHER | unix.BOTHER<<unix.IBSHIFT
		t.Ispeed, t.Ospeed = uint32(baud), uint32(baud)
		return unix.IoctlSetTermios(fd, unix.TCSETS2, t)
	})
}
