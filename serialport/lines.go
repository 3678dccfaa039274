package serialport

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Level is the state a port drives an output control line (DTR or RTS) to.
type Level int

// Levels of an output control line.
const (
	// LevelDefault raises the line, as serial ports are normally opened,
	// and leaves the operating system's hang-up-on-close setting alone.
	LevelDefault Level = iota
	// LevelOn raises the line at open and keeps it raised, also across
	// close (HUPCL cleared), so that reopening changes nothing on it.
	LevelOn
	// LevelOff lowers the line right after open and keeps it low, also
	// across close (HUPCL cleared).
	LevelOff
)

// ParseLevel reads "on" or "off" (any case); "" is LevelDefault. flag names
// the option in the error, e.g. "--dtr".
func ParseLevel(flag, s string) (Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return LevelDefault, nil
	case "on":
		return LevelOn, nil
	case "off":
		return LevelOff, nil
	}
	return LevelDefault, fmt.Errorf("invalid %s %q: must be on or off", flag, s)
}

func (l Level) on() bool { return l != LevelOff }

// String is "on" or "off" (LevelDefault is on).
func (l Level) String() string {
	if l.on() {
		return "on"
	}
	return "off"
}

// Carrier lines: the input line whose loss Options.Carrier treats as an
// unplugged cable.
const (
	CarrierDCD = "dcd"
	CarrierDSR = "dsr"
	CarrierCTS = "cts"
)

// ParseCarrier reads a carrier line name: "dcd", "dsr" or "cts" (any case),
// or "" or "none" for no carrier detection.
func ParseCarrier(s string) (string, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); v {
	case "", "none":
		return "", nil
	case CarrierDCD, CarrierDSR, CarrierCTS:
		return v, nil
	}
	return "", fmt.Errorf("invalid --carrier %q: must be dcd, dsr or cts (or none)", s)
}

// Options are a port's settings besides the line mode: how it drives its
// output control lines, which input line says that the far end is there,
// and whether it asks a USB adapter for low latency. The zero value opens
// ports as before: DTR and RTS raised, no carrier detection.
type Options struct {
	// DTR and RTS set the output control lines at open, before anything
	// is sent. LevelOn and LevelOff also clear HUPCL (Unix) so that the
	// lines stay as set when the port closes; see docs/serial.md for what
	// that does to an Arduino or an ESP32 board.
	DTR, RTS Level
	// Carrier, one of CarrierDCD, CarrierDSR or CarrierCTS, makes the loss
	// of that input line count as an unplugged cable at once: Read and
	// Write fail with ErrDisconnected within about carrierPoll, and the
	// Driver waits, port open, until the line is up again. Empty: off.
	Carrier string
	// LowLatency (Linux) sets an FTDI adapter's latency_timer to 1 ms and
	// ASYNC_LOW_LATENCY where the driver has TIOCSSERIAL; what it did is
	// in Port.LowLatencyReport and the Driver's log.
	LowLatency bool
	// RS485, when set, switches the port into the kernel's RS-485 mode
	// (Linux); a port whose driver has none is not opened.
	RS485 *RS485

	// modem and counts, in tests, replace the device's modem-status
	// lines and its receive error counters.
	modem  func() (ModemLines, error)
	counts func() (ErrorCounts, error)
}

// Validate checks the carrier line name and the RS-485 delays.
func (o Options) Validate() error {
	if _, err := ParseCarrier(o.Carrier); err != nil {
		return err
	}
	if o.RS485 != nil {
		return o.RS485.Validate()
	}
	return nil
}

func (o Options) explicitLines() bool { return o.DTR != LevelDefault || o.RTS != LevelDefault }

// ModemLines is the state of a port's modem-control lines: the outputs it
// drives and the inputs the far end drives.
type ModemLines struct {
	DTR bool `json:"dtr"`
	RTS bool `json:"rts"`
	DCD bool `json:"dcd"`
	DSR bool `json:"dsr"`
	CTS bool `json:"cts"`
	RI  bool `json:"ri"`
}

// String lists the lines, e.g. "DTR on, RTS off, DCD on, DSR on, CTS off, RI off".
func (m ModemLines) String() string {
	f := func(name string, v bool) string {
		if v {
			return name + " on"
		}
		return name + " off"
	}
	return strings.Join([]string{f("DTR", m.DTR), f("RTS", m.RTS), f("DCD", m.DCD), f("DSR", m.DSR), f("CTS", m.CTS), f("RI", m.RI)}, ", ")
}

// carrierUp reports whether the carrier line is up in m.
func carrierUp(m ModemLines, carrier string) bool {
	switch carrier {
	case CarrierDCD:
		return m.DCD
	case CarrierDSR:
		return m.DSR
	case CarrierCTS:
		return m.CTS
	}
	return true
}

// ErrorCounts counts the receive errors a serial driver saw: characters
// with a framing or parity error, hardware and buffer overruns, breaks.
type ErrorCounts struct {
	Frame         uint64 `json:"frame"`
	Parity        uint64 `json:"parity"`
	Overrun       uint64 `json:"overrun"`
	BufferOverrun uint64 `json:"buffer_overrun"`
	Break         uint64 `json:"break"`
}

func (e ErrorCounts) plus(o ErrorCounts) ErrorCounts {
	return ErrorCounts{e.Frame + o.Frame, e.Parity + o.Parity, e.Overrun + o.Overrun, e.BufferOverrun + o.BufferOverrun, e.Break + o.Break}
}

// since is e minus an earlier reading base; a counter that went backwards
// (the driver reset it) counts from zero.
func (e ErrorCounts) since(base ErrorCounts) ErrorCounts {
	d := func(a, b uint64) uint64 {
		if a < b {
			return a
		}
		return a - b
	}
	return ErrorCounts{d(e.Frame, base.Frame), d(e.Parity, base.Parity), d(e.Overrun, base.Overrun), d(e.BufferOverrun, base.BufferOverrun), d(e.Break, base.Break)}
}

// carrierPoll is how often a port with Options.Carrier reads its modem
// lines: a carrier loss is noticed within this time (within about
// pollInterval on Windows, where a blocked Read is not interrupted).
const carrierPoll = 20 * time.Millisecond

// portExt is the part of a Port that this file manages: its options, the
// carrier watch and the error counters' baseline.
type portExt struct {
	opts     Options
	noModem  bool   // the device has no modem-control lines (a pty)
	linesMsg string // what opening did to DTR and RTS, for the log
	lowLat   []string
	rs485    string // what Options.RS485 set, for the log

	carrierErr atomic.Pointer[Error] // set once the carrier dropped
	up         chan struct{}         // closed when the carrier was first seen up
	ended      chan struct{}         // closed when the watch stopped
	stop       chan struct{}         // closed by Close
	stopOnce   sync.Once

	countsOK bool
	base     ErrorCounts // the counters at open
	mu       sync.Mutex
	final    *ErrorCounts // the counts since open, read at Close
}

// modemLines reads the port's modem lines, or the injected ones in tests.
func (p *Port) modemLines() (ModemLines, error) {
	if p.ext.opts.modem != nil {
		return p.ext.opts.modem()
	}
	return p.readModemLines()
}

// readErrorCounts reads the driver's counters, or the injected ones in
// tests.
func (p *Port) readErrorCounts() (ErrorCounts, error) {
	if p.ext.opts.counts != nil {
		return p.ext.opts.counts()
	}
	return p.readDriverCounts()
}

// ModemLines reads the port's modem-control lines. It fails with
// ErrUnsupported on a device that has none (a pseudo-terminal).
func (p *Port) ModemLines() (ModemLines, error) {
	if p.closed.Load() {
		return ModemLines{}, p.closedErr()
	}
	if p.ext.noModem && p.ext.opts.modem == nil {
		return ModemLines{}, newError(p.path, ErrUnsupported, "modem-control lines are not available on this device (a pseudo-terminal has none)", nil)
	}
	m, err := p.modemLines()
	if err != nil {
		return ModemLines{}, newError(p.path, ErrUnsupported, "cannot read the modem-control lines: "+errMsg(err), err)
	}
	return m, nil
}

// ErrorCounts returns the receive errors counted since the port opened
// (TIOCGICOUNT, Linux). It fails with ErrUnsupported where the driver or
// the operating system does not count them.
func (p *Port) ErrorCounts() (ErrorCounts, error) {
	if p.closed.Load() {
		return ErrorCounts{}, p.closedErr()
	}
	if !p.ext.countsOK {
		return ErrorCounts{}, newError(p.path, ErrUnsupported, "receive error counters are not available on this device", nil)
	}
	c, err := p.readErrorCounts()
	if err != nil {
		return ErrorCounts{}, newError(p.path, ErrUnsupported, "cannot read the receive error counters: "+errMsg(err), err)
	}
	return c.since(p.ext.base), nil
}

// LowLatencyReport says what Options.LowLatency did when the port opened,
// one entry per mechanism; empty without it.
func (p *Port) LowLatencyReport() []string { return p.ext.lowLat }

// startLines records the error counters' baseline and, with a carrier
// line, starts watching it.
func (p *Port) startLines() {
	if c, err := p.readErrorCounts(); err == nil {
		p.ext.countsOK, p.ext.base = true, c
	}
	p.ext.up = make(chan struct{})
	p.ext.ended = make(chan struct{})
	p.ext.stop = make(chan struct{})
	if p.ext.opts.Carrier == "" {
		close(p.ext.up)
		return
	}
	go p.watchCarrier()
}

// watchCarrier polls the modem lines until Close. It closes ext.up when
// the carrier is first seen up; when it is seen down after that, it marks
// the port disconnected and interrupts blocked I/O. A device that stops
// answering ends the watch: Read and Write will report it.
func (p *Port) watchCarrier() {
	defer close(p.ext.ended)
	t := time.NewTicker(carrierPoll)
	defer t.Stop()
	seenUp := false
	for {
		m, err := p.modemLines()
		if err != nil {
			return
		}
		switch up := carrierUp(m, p.ext.opts.Carrier); {
		case up && !seenUp:
			seenUp = true
			close(p.ext.up)
		case !up && seenUp:
			line := strings.ToUpper(p.ext.opts.Carrier)
			p.ext.carrierErr.Store(newError(p.path, ErrDisconnected, "device disconnected: carrier lost ("+line+" dropped)", nil))
			p.interrupt()
			return
		}
		select {
		case <-p.ext.stop:
			return
		case <-t.C:
		}
	}
}

// carrierLost returns the carrier-loss error once the carrier dropped.
func (p *Port) carrierLost() error {
	if e := p.ext.carrierErr.Load(); e != nil {
		return e
	}
	return nil
}

// stopLines stops the carrier watch and keeps the final error counts.
func (p *Port) stopLines() {
	p.ext.stopOnce.Do(func() {
		if p.ext.stop != nil {
			close(p.ext.stop)
		}
		if p.ext.countsOK {
			if c, err := p.readErrorCounts(); err == nil {
				d := c.since(p.ext.base)
				p.ext.mu.Lock()
				p.ext.final = &d
				p.ext.mu.Unlock()
			}
		}
	})
}

// finalCounts returns the counts since open as read at Close, if any.
func (p *Port) finalCounts() (ErrorCounts, bool) {
	p.ext.mu.Lock()
	defer p.ext.mu.Unlock()
	if p.ext.final == nil {
		return ErrorCounts{}, false
	}
	return *p.ext.final, true
}
