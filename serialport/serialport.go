package serialport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/sockmux/sockmux/link"
)

// Reopen timing: the wait between attempts to open a vanished device grows
// from reopenMinWait to reopenMaxWait. A port that failed sooner than
// stableAfter after it opened also delays the next open, so a device that
// opens but fails at once is not reopened in a tight loop.
const (
	reopenMinWait = 100 * time.Millisecond
	reopenMaxWait = time.Second
	stableAfter   = 2 * time.Second
)

// Driver opens a serial device for the link. It implements link.Driver.
type Driver struct {
	path string
	mode Mode
	log  *slog.Logger

	mu    sync.Mutex // guards first and mode (SetSpeed changes its Baud)
	first *Port      // opened by New, handed out by the first Open

	openMu   sync.Mutex // serializes Open; guards lastOpen and wait
	lastOpen time.Time
	wait     time.Duration // delay before the next quick reopen

	sys   System    // where an identity or a path's adapter is looked up
	ident *Identity // the adapter path names, when it is an identity
	track tracking  // guarded by openMu
	ext   driverExt // control lines and error counters (driver_lines.go)
	// absent is why NewWaiting could not open the device (logged then);
	// the first Open waits for it, "" once it opened.
	absent string // guarded by openMu
}

var _ link.Driver = (*Driver)(nil)

// New is System{}.New: the driver for a device of this machine.
func New(path string, mode Mode, log *slog.Logger) (*Driver, error) {
	return System{}.New(path, mode, log)
}

// New validates mode and opens the device at path once, so that start-up
// errors are immediate; the open port is what the first Open returns. The
// link needs 8 data bits. The error is an *Error (or a mode validation error) with a one-line message
// that says what to do, e.g. for a missing device, a path that is not a
// serial device, a device in use, missing permissions or a refused baud
// rate. A nil log discards log messages.
//
// path may also be a USB adapter's identity (see Identity), which is
// looked up in s at every open, so that the driver follows the adapter to
// whatever name it gets when it is plugged in again. At a path, the driver
// remembers the identity of the USB adapter it first opened and does not
// open another adapter that appears there later.
func (s System) New(path string, mode Mode, log *slog.Logger) (*Driver, error) {
	return s.newDriver(path, mode, Options{}, log)
}

func (s System) newDriver(path string, mode Mode, opts Options, log *slog.Logger) (*Driver, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := mode.Validate(); err != nil {
		return nil, fmt.Errorf("serial %s: %w", path, err)
	}
	if n := mode.normalized().DataBits; n != 8 {
		return nil, newError(path, ErrUnsupported, fmt.Sprintf("%d data bits cannot carry sockmux's binary frames: use 8", n), nil)
	}
	d := &Driver{path: path, mode: mode, log: log, sys: s, wait: reopenMinWait, ext: driverExt{opts: opts}}
	if IsIdentity(path) {
		id, err := ParseIdentity(path)
		if err != nil {
			return nil, err
		}
		d.ident = &id
	}
	p, err := d.openDevice()
	if err != nil {
		return nil, err
	}
	d.mode, d.first, d.lastOpen = p.mode, p, time.Now()
	return d, nil
}

// Open returns the port opened by New the first time, and afterwards opens
// the same path again with the same settings. If the device cannot be opened
// (an unplugged USB adapter, an unplugged virtual cable) it logs
// "serial PATH lost: REASON; waiting" once and retries with a growing delay
// (100 ms to 1 s) until the device is back, logging "serial PATH reopened",
// or ctx ends.
//
// The transport is a *Port. Where the device reports its output queue (real
// serial ports on Linux, macOS and the BSDs) the transport implements
// link.OutputQueuer; on a Linux pseudo-terminal, whose TIOCOUTQ always reads
// 0, and on Windows it does not, and the link paces by the line rate alone.
func (d *Driver) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	d.mu.Lock()
	p := d.first
	d.first = nil
	d.mu.Unlock()
	if p != nil {
		err := d.ready(ctx, p)
		if err == nil {
			return transport(p), nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		// The device went away while waiting for the carrier: reopen.
	}
	d.openMu.Lock()
	defer d.openMu.Unlock()
	// Do not reopen in a tight loop when ports fail right after opening.
	if time.Since(d.lastOpen) < stableAfter {
		if err := sleepCtx(ctx, d.wait); err != nil {
			return nil, err
		}
		d.wait = min(2*d.wait, reopenMaxWait)
	} else {
		d.wait = reopenMinWait
	}
	wait := reopenMinWait
	lost := false
	var lastMsg string
	verb := "reopened"
	if d.absent != "" {
		// NewWaiting said it is not there yet.
		lost, lastMsg, verb = true, d.absent, "opened"
	}
	for {
		p, err := d.openDevice()
		if err == nil {
			if lost {
				d.log.Info(fmt.Sprintf("serial %s %s%s", d.path, verb, d.where()))
			}
			d.absent = ""
			d.lastOpen = time.Now()
			if err = d.ready(ctx, p); err == nil {
				return transport(p), nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
		}
		switch msg := lostReason(err); {
		case !lost:
			d.log.Warn(fmt.Sprintf("serial %s lost: %s; waiting", d.path, msg))
			lost, lastMsg = true, msg
		case msg != lastMsg:
			d.log.Debug(fmt.Sprintf("serial %s still unavailable: %s", d.path, msg))
			lastMsg = msg
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return nil, err
		}
		wait = min(2*wait, reopenMaxWait)
	}
}

// lostReason says briefly why the device cannot be opened again.
func lostReason(err error) string {
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound.Error()
	}
	if errors.Is(err, ErrOtherDevice) {
		return "a different adapter is plugged in"
	}
	return errMsg(err)
}

// transport hides OutputQueued from the link when the port cannot report
// its output queue, so that the link's type assertion for
// link.OutputQueuer fails instead of reading a meaningless 0.
func transport(p *Port) io.ReadWriteCloser {
	if p.hasOutputQueue() {
		return p
	}
	return struct{ io.ReadWriteCloser }{p}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Properties reports the line rate, Baud divided by the bits each byte
// takes on the line (11520 bytes/s for 115200 8N1), and that a serial line
// is not reliable.
func (d *Driver) Properties() link.Properties {
	return link.Properties{LineRate: d.Mode().BytesPerSecond(), Reliable: false}
}

// String describes the driver, e.g. "serial /dev/ttyUSB0 115200 8N1".
func (d *Driver) String() string {
	return "serial " + d.path + " " + d.Mode().String()
}

// Path returns the device path or identity the driver was made with.
func (d *Driver) Path() string { return d.path }

// Mode returns the line settings, with defaults filled in.
func (d *Driver) Mode() Mode {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mode
}

// Close closes the port New opened if Open never handed it out. Ports that
// Open returned are closed by whoever holds them.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.first != nil {
		err := d.first.Close()
		d.first = nil
		return err
	}
	return nil
}
