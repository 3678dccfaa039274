//go:build !(linux || darwin || freebsd || openbsd)

package cable

import (
	"errors"
	"os"
	"runtime"
)

// UnplugSignal is the signal "sockmux cable" takes as a request to unplug
// (or plug back in) the cable: SIGUSR1. It is nil where there is none.
var UnplugSignal os.Signal

// openEnd fails: there are no pseudo-terminals to make a cable of here.
func openEnd() (*end, error) {
	return nil, errors.New("cable: virtual serial cables need pseudo-terminals, which " + runtime.GOOS + " does not have")
}
