//go:build linux && !ppc && !ppc64 && !ppc64le

package serialport

import (
	"os"

	"github.com/sockmux/sockmux/internal/fdctl"
	"golang.org/x/sys/unix"
)

// actualSpeed reads back the output speed the driver really set: Linux
// drivers that cannot do a rate pick another one instead of failing.
func actualSpeed(f *os.File) (int, bool) {
	var speed uint32
	err := fdctl.Control(f, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS2)
		if err != nil {
			return err
		}
		speed = t.Ospeed
		return nil
	})
	if err != nil || speed == 0 {
		return 0, false
	}
	return int(speed), true
}
