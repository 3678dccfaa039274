//go:build darwin || freebsd || openbsd

package serialport

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// portIO: on macOS and the BSDs the device's descriptor is in Go's runtime
// poller, which Close and deadlines wake; nothing to add.
type portIO struct{}

func (portIO) wake()  {}
func (portIO) close() {}

// openDevice opens the device for I/O in the runtime poller. O_NONBLOCK: do
// not wait for carrier detect; the poller needs it anyway.
func openDevice(path string) (*os.File, portIO, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	return f, portIO{}, err
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
		_ = p.sys.f.SetReadDeadline(p.ioDeadline())
		if err := p.lostErr(); err != nil {
			return 0, err
		}
		n, err := p.sys.f.Read(b)
		if n > 0 {
			return n, nil
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
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
		_ = p.sys.f.SetWriteDeadline(p.ioDeadline())
		if err := p.lostErr(); err != nil {
			return written, err
		}
		n, err := p.sys.f.Write(b[written:])
		written += n
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if err := p.checkNode(); err != nil {
				return written, err
			}
			continue
		}
		return written, p.ioError("write", err)
	}
	return written, nil
}

// interrupt wakes a Read or Write blocked in the poller; each checks
// lostErr after setting its own deadline, so none is missed.
func (p *Port) interrupt() {
	_ = p.sys.f.SetDeadline(time.Now())
}
