//go:build linux || darwin || freebsd || openbsd

package cable

import (
	"fmt"
	"os"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// UnplugSignal is the signal "sockmux cable" takes as a request to unplug
// (or plug back in) the cable: SIGUSR1. It is nil where there is none.
var UnplugSignal os.Signal = syscall.SIGUSR1

// openEnd creates a pseudo-terminal in raw mode.
func openEnd() (*end, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("cable: creating a pseudo-terminal: %w", err)
	}
	if err := makeRaw(s); err != nil {
		_ = m.Close()
		_ = s.Close()
		return nil, fmt.Errorf("cable: setting %s to raw mode: %w", s.Name(), err)
	}
	// pty.Open leaves the master blocking, out of the runtime poller, where
	// Close would not interrupt a Read. Put a non-blocking duplicate there.
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	_ = m.Close()
	if err == nil {
		err = unix.SetNonblock(fd, true)
		if err != nil {
			_ = unix.Close(fd)
		}
	}
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("cable: preparing the pseudo-terminal master: %w", err)
	}
	return &end{master: os.NewFile(uintptr(fd), "master of "+s.Name()), slave: s, name: s.Name()}, nil
}

// makeRaw puts the terminal in raw mode, 8 bits, no echo, no flow control,
// as cfmakeraw does.
func makeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), ioctlGetTermios)
		if err != nil {
			ioErr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		ioErr = unix.IoctlSetTermios(int(fd), ioctlSetTermios, t)
	})
	if err != nil {
		return err
	}
	return ioErr
}
