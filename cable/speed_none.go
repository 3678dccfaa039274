//go:build !(linux || darwin || freebsd || openbsd) || (linux && (ppc || ppc64 || ppc64le))

package cable

import (
	"errors"
	"os"
)

// followsRates is false: here the cable does not read its ends' speeds
// (PowerPC Linux has other termios2 ioctls; elsewhere there are no ptys).
const followsRates = false

func endSpeed(*os.File) (int, error) { return 0, errors.New("not supported here") }

func setEndSpeed(*os.File, int) error { return errors.New("not supported here") }
