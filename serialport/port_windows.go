package serialport

import (
	"errors"
	"io/fs"
	"os"
	"regexp"

	"go.bug.st/serial"
	"golang.org/x/sys/windows"
)

const permissionHint = "close other programs using the port, or run sockmux as a user allowed to use it"

// portSys is the Windows part of a Port: go.bug.st/serial's port, read with
// a timeout so that a closed or vanished port is noticed.
type portSys struct {
	sp serial.Port
}

var comPort = regexp.MustCompile(`(?i)^(\\\\\.\\)?COM[0-9]+$`)

// IsSerial reports whether path names a serial port: COM1, COM23,
// \\.\COM23 (in any case), or a USB adapter's identity (see Identity).
func IsSerial(path string) bool {
	if IsIdentity(path) {
		return true
	}
	return comPort.MatchString(path)
}

func platformModeProblem(m Mode) string {
	if m.Flow == FlowRTSCTS {
		return "rtscts flow control is not supported on Windows"
	}
	return ""
}

func openPort(path string, m Mode, o Options) (*Port, error) {
	if fi, err := os.Stat(path); err == nil {
		switch {
		case fi.IsDir():
			return nil, newError(path, ErrNotSerial, "not a serial device: it is a directory", nil)
		case fi.Mode().IsRegular():
			return nil, newError(path, ErrNotSerial, "not a serial device: it is a regular file", nil)
		}
	}
	sm := toSerialMode(m)
	// Windows sets DTR and RTS as part of opening: they never rise
	// when asked to be off.
	sm.InitialStatusBits = &serial.ModemOutputBits{DTR: o.DTR.on(), RTS: o.RTS.on()}
	sp, err := serial.Open(path, sm)
	if err != nil {
		return nil, serialOpenError(path, m, err)
	}
	if err := sp.SetReadTimeout(pollInterval); err != nil {
		_ = sp.Close()
		return nil, newError(path, ErrNotSerial, "cannot set the read timeout: "+err.Error(), err)
	}
	_ = sp.ResetInputBuffer()
	p := &Port{path: path, mode: m, sys: portSys{sp: sp}}
	p.ext.opts = o
	p.ext.linesMsg = "DTR " + o.DTR.String() + ", RTS " + o.RTS.String()
	if o.LowLatency {
		p.ext.lowLat = p.setLowLatency()
	}
	if o.RS485 != nil {
		err := p.setRS485(*o.RS485)
		_ = sp.Close()
		return nil, err
	}
	p.startLines()
	return p, nil
}

// readModemLines reads the input lines with GetCommModemStatus; the
// outputs are reported as set at open.
func (p *Port) readModemLines() (ModemLines, error) {
	st, err := p.sys.sp.GetModemStatusBits()
	if err != nil {
		return ModemLines{}, err
	}
	return ModemLines{DTR: p.ext.opts.DTR.on(), RTS: p.ext.opts.RTS.on(), DCD: st.DCD, DSR: st.DSR, CTS: st.CTS, RI: st.RI}, nil
}

// interrupt does nothing: a blocked Read returns within pollInterval and
// then sees the carrier loss.
func (p *Port) interrupt() {}

// openError classifies an error from opening the port.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, windows.ERROR_FILE_NOT_FOUND), errors.Is(err, windows.ERROR_PATH_NOT_FOUND):
		return notFoundError(path, err)
	case errors.Is(err, windows.ERROR_ACCESS_DENIED), errors.Is(err, windows.ERROR_SHARING_VIOLATION):
		// Windows reports a port another program has open as access denied.
		return busyError(path, err)
	}
	return newError(path, ErrNotSerial, "cannot open: "+err.Error(), err)
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
		if err := p.carrierLost(); err != nil {
			return 0, err
		}
		n, err := p.sys.sp.Read(b)
		if n > 0 {
			return n, nil
		}
		if err != nil {
			return 0, p.ioError("read", err)
		}
		// The read timed out: check for Close and try again.
	}
}

// Write writes all of b. See Port for how it fails.
func (p *Port) Write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		if p.closed.Load() {
			return written, p.closedErr()
		}
		if err := p.carrierLost(); err != nil {
			return written, err
		}
		n, err := p.sys.sp.Write(b[written:])
		written += n
		if err != nil {
			return written, p.ioError("write", err)
		}
	}
	return written, nil
}

// hasOutputQueue is false: this package reads no output queue on Windows.
func (p *Port) hasOutputQueue() bool { return false }

// Close closes the port; a pending Read returns within about 200 ms. Closing
// a device that went away is not an error; Close returns nil.
func (p *Port) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	p.stopLines()
	p.setMu.Lock() // not while SetSpeed uses the handle
	_ = p.sys.sp.Close()
	p.setMu.Unlock()
	return nil
}

// ioError classifies an error from I/O on the open port.
func (p *Port) ioError(op string, err error) error {
	if p.closed.Load() {
		return p.closedErr()
	}
	return newError(p.path, ErrDisconnected, "device disconnected: "+op+": "+err.Error(), err)
}

// speedNow is not read back on Windows.
func (p *Port) speedNow() (int, bool) { return 0, false }

// probeSpeeds is false on Windows: a speed SetCommState refuses makes
// go.bug.st/serial close the port, so AcceptedSpeeds does not try rates
// on the open port there.
const probeSpeeds = false
