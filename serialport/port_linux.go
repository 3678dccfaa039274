package serialport

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	ioctlGetTermios = unix.TCGETS
	ioctlSetTermios = unix.TCSETS
)

const permissionHint = `add your user to the "dialout" group ("uucp" on Arch Linux): sudo usermod -aG dialout $USER, then log out and back in`

// Linux device majors of pseudo-terminal slaves: Unix98 ptys (/dev/pts/N)
// and legacy BSD ptys (/dev/ttyp0).
const (
	unix98PtySlaveMajorFirst = 136
	unix98PtySlaveMajorLast  = 143
	bsdPtySlaveMajor         = 3
)

func platformModeProblem(m Mode) string {
	if m.StopBits == StopBitsOneAndHalf {
		return "1.5 stop bits are not supported on Linux"
	}
	return ""
}

func rdev(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Rdev), true
}

// isLinuxPty reports whether fi is a pseudo-terminal slave.
func isLinuxPty(fi os.FileInfo) bool {
	dev, ok := rdev(fi)
	if !ok {
		return false
	}
	major := unix.Major(dev)
	return major >= unix98PtySlaveMajorFirst && major <= unix98PtySlaveMajorLast || major == bsdPtySlaveMajor
}

// isTTYDevice reports whether the character device fi belongs to the tty
// subsystem, without opening it (opening a serial port can reset the board
// behind it): a pseudo-terminal, or a device sysfs files under class tty.
func isTTYDevice(_ string, fi os.FileInfo) bool {
	if isLinuxPty(fi) {
		return true
	}
	dev, ok := rdev(fi)
	if !ok {
		return false
	}
	link, err := filepath.EvalSymlinks(filepath.Join("/sys/dev/char", strconv.FormatUint(uint64(unix.Major(dev)), 10)+":"+strconv.FormatUint(uint64(unix.Minor(dev)), 10), "subsystem"))
	if err != nil {
		return false
	}
	return filepath.Base(link) == "tty" && strings.Contains(link, "/class/")
}
