//go:build darwin || freebsd || openbsd

package serialport

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	ioctlGetTermios = unix.TIOCGETA
	ioctlSetTermios = unix.TIOCSETA
)

func platformModeProblem(m Mode) string {
	switch {
	case m.StopBits == StopBitsOneAndHalf:
		return "1.5 stop bits are not supported on " + runtime.GOOS
	case m.Parity == ParityMark || m.Parity == ParitySpace:
		return m.Parity + " parity is not supported on " + runtime.GOOS
	}
	return ""
}

// isLinuxPty is false: BSD pseudo-terminals keep a real output queue.
func isLinuxPty(os.FileInfo) bool { return false }

// actualSpeed is not checked on the BSDs.
func actualSpeed(*os.File) (int, bool) { return 0, false }

// isTTYDevice reports whether the character device at path is named like a
// terminal (/dev/tty*, /dev/cu*, /dev/pts/N), without opening it.
func isTTYDevice(path string, _ os.FileInfo) bool {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	base := filepath.Base(path)
	return strings.HasPrefix(base, "tty") || strings.HasPrefix(base, "cu") || strings.HasPrefix(path, "/dev/pts/")
}
