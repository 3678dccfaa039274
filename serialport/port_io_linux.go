package serialport

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// portIO is how a Linux port waits for its device: outside Go's runtime
// poller. A descriptor in the poller is registered for reading and writing
// at once, edge-triggered, so the kernel wakes the process each time the
// tty's input gains bytes or its output drains some (about a thousand times
// a second on a line kept busy), even while nobody reads or writes: the
// link's reader gathers bytes for some milliseconds between reads, and its
// writer writes a slice of line time and sleeps. Here a Read or Write tries
// the non-blocking descriptor first, and only when it would block waits in
// poll(2) for the device and for efd, an eventfd that Close and interrupt
// signal; a wait ties up a thread, which a link's two loops can afford.
//
// The reads and writes themselves are raw system calls (rawRead,
// rawWrite): on a non-blocking descriptor they return at once, and a
// system call the runtime is told about wakes its monitor thread (sysmon)
// whenever the process was idle, which on a paced line is before nearly
// every read and write.
type portIO struct {
	dev syscall.RawConn // the device's descriptor (f's)
	efd *os.File        // an eventfd: readable once Close or interrupt signalled it
	wrc syscall.RawConn // efd's descriptor
}

// errWoken: the wait was cut short by Close or interrupt.
var errWoken = errors.New("serial port woken")

// errWaitTimeout: the wait's timeout passed.
var errWaitTimeout = errors.New("serial port wait timed out")

// openDevice opens the device non-blocking (do not wait for carrier
// detect) and keeps the descriptor out of the runtime poller: os.NewFile
// leaves a descriptor that is blocking when it is handed over to blocking
// I/O, which this file never does; it sets O_NONBLOCK again at once.
func openDevice(path string) (*os.File, portIO, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, portIO{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		_ = unix.Close(fd)
		return nil, portIO{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = f.Close()
		return nil, portIO{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	// Blocking, so out of the poller too: it is only written, once, and
	// polled.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		_ = f.Close()
		return nil, portIO{}, &os.PathError{Op: "eventfd", Path: path, Err: err}
	}
	pio := portIO{efd: os.NewFile(uintptr(efd), "eventfd "+path)}
	if pio.dev, err = f.SyscallConn(); err == nil {
		pio.wrc, err = pio.efd.SyscallConn()
	}
	if err != nil {
		_ = f.Close()
		pio.close()
		return nil, portIO{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return f, pio, nil
}

// wake signals the eventfd: every wait, now and later, returns errWoken.
func (pio portIO) wake() {
	if pio.wrc == nil {
		return
	}
	_ = pio.wrc.Control(func(fd uintptr) {
		_, _ = unix.Write(int(fd), binary.NativeEndian.AppendUint64(nil, 1))
	})
}

// close closes the eventfd (after the device: a wait still under way
// holds it open until it returns).
func (pio portIO) close() {
	if pio.efd != nil {
		_ = pio.efd.Close()
	}
}

// do runs op (rawRead or rawWrite) on the device until it does not
// fail with EAGAIN, waiting in between for events on the device, for the
// wake-up or for timeout milliseconds (-1: no timeout).
func (pio portIO) do(b []byte, events int16, timeout int, op func(int, []byte) (int, error)) (n int, err error) {
	cerr := pio.dev.Control(func(fd uintptr) {
		for {
			n, err = op(int(fd), b)
			if err == nil {
				return
			}
			n = 0
			if err == unix.EINTR {
				continue
			}
			if err != unix.EAGAIN {
				return
			}
			if err = pio.wait(int(fd), events, timeout); err != nil {
				return
			}
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	return n, err
}

// wait polls the device for events, and the wake-up.
func (pio portIO) wait(fd int, events int16, timeout int) error {
	var werr error
	cerr := pio.wrc.Control(func(wfd uintptr) {
		fds := [2]unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(wfd), Events: unix.POLLIN}}
		for {
			k, err := unix.Poll(fds[:], timeout)
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				werr = err
			case fds[1].Revents != 0:
				werr = errWoken
			case k == 0:
				werr = errWaitTimeout
			}
			return // else the device is ready, or hung up: the next op says which
		}
	})
	if cerr != nil {
		return cerr
	}
	return werr
}

// pollTimeout is the timeout of one wait in milliseconds: none when the
// node watch reports the device's removal, else pollInterval, to check the
// node then.
func (p *Port) pollTimeout() int {
	if p.sys.watch != nil {
		return -1
	}
	return int(pollInterval.Milliseconds())
}

// Read reads at least one byte into b, waiting as long as it takes. See Port
// for how it fails.
func (p *Port) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		if p.closed.Load() {
			return 0, p.closedErr()
		}
		if err := p.lostErr(); err != nil {
			return 0, err
		}
		n, err := p.sys.io.do(b, unix.POLLIN, p.pollTimeout(), rawRead)
		switch {
		case n > 0:
			return n, nil
		case err == nil:
			return 0, p.ioError("read", io.EOF) // a tty reads 0 bytes when hung up
		case err == errWoken:
			continue // closed, or lost: the checks above say which
		case err == errWaitTimeout:
			if err := p.checkNode(); err != nil {
				return 0, err
			}
			continue
		}
		return 0, p.ioError("read", err)
	}
}

// Write writes all of b, waiting while the device's output buffer is full
// (flow control or a slow line). See Port for how it fails.
func (p *Port) Write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		if p.closed.Load() {
			return written, p.closedErr()
		}
		if err := p.lostErr(); err != nil {
			return written, err
		}
		n, err := p.sys.io.do(b[written:], unix.POLLOUT, p.pollTimeout(), rawWrite)
		written += n
		switch {
		case err == nil, err == errWoken:
			continue
		case err == errWaitTimeout:
			if err := p.checkNode(); err != nil {
				return written, err
			}
			continue
		}
		return written, p.ioError("write", err)
	}
	return written, nil
}

// interrupt wakes a Read or Write waiting for the device; each checks
// lostErr before it waits, and a wake-up lasts, so none is missed.
func (p *Port) interrupt() {
	p.sys.io.wake()
}

// rawRead is read(2) on a non-blocking descriptor, as a raw system call.
func rawRead(fd int, b []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// rawWrite is write(2) on a non-blocking descriptor, as a raw system call.
func rawWrite(fd int, b []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
