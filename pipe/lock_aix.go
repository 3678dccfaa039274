//go:build aix

package pipe

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// tryLock takes an exclusive fcntl lock on f without waiting (AIX has no
// flock). Unlike flock, fcntl locks belong to the process, so two drivers
// on the same path within one process do not exclude each other.
func tryLock(f *os.File) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
		switch err {
		case nil:
			return true, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.EACCES:
			return false, nil
		}
		return false, err
	}
}
