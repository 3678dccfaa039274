package serialport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// driverExt is the part of a Driver that follows its ports' control lines
// and error counters (this file).
type driverExt struct {
	opts Options

	mu       sync.Mutex
	cur      *Port       // the port handed out last
	acc      ErrorCounts // counts of the ports closed before cur
	countsOK bool        // some port had error counters
	linesMsg string      // last logged: what opening did to the lines
	lowLat   string      // last logged: what --low-latency did
	rs485    string      // last logged: the RS-485 mode set
}

// NewWith is New with Options for the control lines, a carrier line and
// low latency. What they did at open is logged at info level: once, and
// again on a reopen that did something else.
func NewWith(path string, mode Mode, opts Options, log *slog.Logger) (*Driver, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("serial %s: %w", path, err)
	}
	d, err := System{}.newDriver(path, mode, opts, log)
	if err != nil {
		return nil, err
	}
	d.ext.mu.Lock()
	d.noteLocked(d.first)
	d.ext.mu.Unlock()
	return d, nil
}

// NewWaiting is NewWith for a port that may be absent at start: a lab
// host's adapter not plugged in yet, one of several ports of a hub. Only
// a bad mode, bad options or a malformed identity are an error; a device
// that cannot be opened now (missing, busy, not a serial device) is
// logged, "serial PATH not available: REASON; waiting", and the first
// Open waits for it as a reopen waits for an unplugged adapter.
func NewWaiting(path string, mode Mode, opts Options, log *slog.Logger) (*Driver, error) {
	d, err := NewWith(path, mode, opts, log)
	if err == nil || !waitable(err) {
		return d, err
	}
	var ident *Identity
	if IsIdentity(path) {
		id, err := ParseIdentity(path)
		if err != nil {
			return nil, err
		}
		ident = &id
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d = &Driver{path: path, mode: mode.normalized(), log: log, sys: System{}, wait: reopenMinWait, ext: driverExt{opts: opts}, ident: ident}
	d.absent = lostReason(err)
	d.log.Warn(fmt.Sprintf("serial %s not available: %s; waiting", path, d.absent))
	return d, nil
}

// waitable reports whether err, New's, is about the device rather than
// the settings: one that plugging in the right device fixes.
func waitable(err error) bool {
	for _, kind := range []error{ErrNotFound, ErrNotSerial, ErrBusy, ErrPermission, ErrDisconnected, ErrOtherDevice, ErrAmbiguous} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}

// noteLocked logs what opening p did, when it differs from last time.
func (d *Driver) noteLocked(p *Port) {
	o := d.ext.opts
	if msg := p.ext.linesMsg; msg != d.ext.linesMsg && (o.explicitLines() || o.Carrier != "") {
		d.log.Info(fmt.Sprintf("serial %s: %s", d.path, msg))
		d.ext.linesMsg = msg
	}
	if msg := strings.Join(p.ext.lowLat, "; "); msg != "" && msg != d.ext.lowLat {
		d.log.Info(fmt.Sprintf("serial %s: --low-latency: %s", d.path, msg))
		d.ext.lowLat = msg
	}
	if msg := p.ext.rs485; msg != "" && msg != d.ext.rs485 {
		d.log.Info(fmt.Sprintf("serial %s: %s", d.path, msg))
		d.ext.rs485 = msg
	}
}

// ready makes p the current port and, with a carrier line, waits until
// the carrier is up, keeping p open meanwhile (closing and reopening would
// pulse DTR). It fails, p closed, when ctx ends or the device stops
// answering.
func (d *Driver) ready(ctx context.Context, p *Port) error {
	d.ext.mu.Lock()
	if old := d.ext.cur; old != nil && old != p {
		if c, ok := old.finalCounts(); ok {
			d.ext.acc = d.ext.acc.plus(c)
		}
	}
	d.ext.cur = p
	d.ext.countsOK = d.ext.countsOK || p.ext.countsOK
	d.noteLocked(p)
	d.ext.mu.Unlock()

	select {
	case <-p.ext.up:
		return nil
	default:
	}
	line := strings.ToUpper(d.ext.opts.Carrier)
	d.log.Info(fmt.Sprintf("serial %s: carrier (%s) down: waiting for the far end", d.path, line))
	select {
	case <-p.ext.up:
		d.log.Info(fmt.Sprintf("serial %s: carrier (%s) up", d.path, line))
		return nil
	case <-p.ext.ended:
		_ = p.Close()
		return newError(d.path, ErrDisconnected, "device disconnected while waiting for the carrier ("+line+")", nil)
	case <-ctx.Done():
		_ = p.Close()
		return ctx.Err()
	}
}

// LineStatus is what Driver.LineStatus reports: the carrier line watched,
// the modem lines now and the receive errors counted since New. A nil
// Lines or Errors is not available, and its Note says why.
type LineStatus struct {
	Carrier    string       `json:"carrier,omitempty"`
	Lines      *ModemLines  `json:"lines,omitempty"`
	LinesNote  string       `json:"lines_note,omitempty"`
	Errors     *ErrorCounts `json:"errors,omitempty"`
	ErrorsNote string       `json:"errors_note,omitempty"`
}

// LineStatus reads the current port's modem lines and the receive error
// counts of all the ports the driver opened.
func (d *Driver) LineStatus() LineStatus {
	d.ext.mu.Lock()
	cur, acc, countsOK := d.ext.cur, d.ext.acc, d.ext.countsOK
	d.ext.mu.Unlock()
	if cur == nil {
		d.mu.Lock()
		cur = d.first
		d.mu.Unlock()
	}
	st := LineStatus{Carrier: d.ext.opts.Carrier}
	if cur == nil || cur.closed.Load() {
		st.LinesNote = "the port is not open"
	} else if m, err := cur.ModemLines(); err != nil {
		st.LinesNote = "not available: " + errMsg(err)
	} else {
		st.Lines = &m
	}
	switch {
	case cur == nil:
	case cur.closed.Load():
		// Closed, not yet replaced: its counts as read at Close.
		if c, ok := cur.finalCounts(); ok {
			acc = acc.plus(c)
		}
	case cur.ext.countsOK:
		countsOK = true
		if c, err := cur.ErrorCounts(); err == nil {
			acc = acc.plus(c)
		}
	}
	if countsOK {
		st.Errors = &acc
	} else {
		st.ErrorsNote = "not available on this device (no TIOCGICOUNT)"
	}
	return st
}
