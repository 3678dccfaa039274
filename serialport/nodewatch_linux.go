package serialport

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// nodeWatch notices, without polling, the one unplug Linux does not report
// on the open descriptor: the device node removed or made to name another
// device while the old device stays quiet. (A USB adapter pulled out, or a
// pseudo-terminal whose master closed, is hung up by the kernel: a blocked
// Read returns at once with EOF or EIO.) It watches, with inotify, the
// directories of the path the port was opened with and of the device it
// resolved to, and checks the node again on every change there.
//
// A blocked Read or Write then waits in the runtime poller with no
// deadline: an idle port costs no wake-ups.
type nodeWatch struct {
	f    *os.File              // the inotify descriptor, in the poller
	gone atomic.Pointer[Error] // set once the node was found gone or changed
	done chan struct{}         // closed when the watch goroutine ended
}

// nodeWatchMask: entries created, removed or renamed in a watched
// directory, and the directory itself removed or renamed.
const nodeWatchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// startNodeWatch starts watching p's device node. It returns false, and
// the port polls instead (pollInterval), when inotify is not available
// (its limits reached, or a kernel without it).
func (p *Port) startNodeWatch() bool {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return false
	}
	dirs := []string{filepath.Dir(p.path)}
	if real, err := filepath.EvalSymlinks(p.path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		if _, err := unix.InotifyAddWatch(fd, d, nodeWatchMask); err != nil {
			_ = unix.Close(fd)
			return false
		}
	}
	w := &nodeWatch{f: os.NewFile(uintptr(fd), "inotify "+p.path), done: make(chan struct{})}
	p.sys.watch = w
	go p.runNodeWatch(w)
	return true
}

// runNodeWatch waits for changes in the watched directories until the
// watch is closed, checking the node after each. Once the node is gone it
// records why and interrupts blocked I/O.
func (p *Port) runNodeWatch(w *nodeWatch) {
	defer close(w.done)
	buf := make([]byte, 4096)
	// The node may have changed between the open and the first watch.
	for {
		if err := p.checkNode(); err != nil {
			var e *Error
			if errors.As(err, &e) {
				w.gone.Store(e)
			}
			p.interrupt()
			return
		}
		if _, err := w.f.Read(buf); err != nil {
			return // closed by Close (or the kernel dropped the watch)
		}
	}
}

// nodeGone returns the node watch's error once the node went away.
func (p *Port) nodeGone() error {
	if w := p.sys.watch; w != nil {
		if e := w.gone.Load(); e != nil {
			return e
		}
	}
	return nil
}

// stopNodeWatch ends the watch, if any, and waits for its goroutine.
func (p *Port) stopNodeWatch() {
	if w := p.sys.watch; w != nil {
		_ = w.f.Close()
		<-w.done
	}
}
