package serialport

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"
)

// pollInterval bounds how long a Read or Write waits in the operating system
// before the port checks that it is still open and its device still present,
// where nothing tells it sooner: on Windows, and on macOS and the BSDs (on
// Linux the kernel hangs up an unplugged device and an inotify watch reports
// a removed or replaced device node, so blocked I/O waits without waking).
const pollInterval = 200 * time.Millisecond

// Port is an open serial port, the transport a Driver hands to the link.
//
// Read blocks until at least one byte arrives; it never returns (0, nil).
// Read and Write fail with an error matching ErrDisconnected soon after the
// device goes away (at once on Linux; within about 200 ms elsewhere, even
// where the operating system reports nothing), and with ErrClosed once Close
// was called; Close unblocks a pending Read or Write. One goroutine may read
// while another writes.
//
// On Linux, macOS and the BSDs Port also has OutputQueued, which reports the
// bytes written but not yet sent (TIOCOUTQ).
type Port struct {
	path   string
	modeMu sync.Mutex // guards mode, which SetSpeed changes
	mode   Mode
	setMu  sync.Mutex // held by SetSpeed, and by Close to close the descriptor SetSpeed uses
	closed atomic.Bool
	sys    portSys
	ext    portExt // control lines, carrier, error counters (lines.go)
}

// OpenPort opens and configures the serial device at path. It fails with an
// *Error whose Kind says why: ErrNotFound, ErrNotSerial, ErrBusy,
// ErrPermission or ErrUnsupported, or a mode validation error. Most callers
// want New, which also reopens the device when it comes back after an
// unplug.
func OpenPort(path string, mode Mode) (*Port, error) {
	return OpenPortWith(path, mode, Options{})
}

// OpenPortWith is OpenPort with Options: the control lines, a carrier
// line, low latency.
func OpenPortWith(path string, mode Mode, opts Options) (*Port, error) {
	if err := mode.Validate(); err != nil {
		return nil, fmt.Errorf("serial %s: %w", path, err)
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("serial %s: %w", path, err)
	}
	m := mode.normalized()
	if msg := platformModeProblem(m); msg != "" {
		return nil, newError(path, ErrUnsupported, msg, nil)
	}
	if opts.RTS == LevelOff && m.Flow == FlowRTSCTS {
		return nil, fmt.Errorf("serial %s: --rts off cannot go with --flow rtscts: with flow control the driver raises and lowers RTS itself, and a low RTS stops the far end sending", path)
	}
	if opts.Carrier == CarrierCTS && m.Flow == FlowRTSCTS {
		return nil, fmt.Errorf("serial %s: --carrier cts cannot go with --flow rtscts: the far end lowers its RTS, this end's CTS, to pause the sender, which is not a lost carrier", path)
	}
	return openPort(path, m, opts)
}

// Path returns the device path the port was opened with.
func (p *Port) Path() string { return p.path }

// Mode returns the port's line settings, with defaults filled in.
func (p *Port) Mode() Mode {
	p.modeMu.Lock()
	defer p.modeMu.Unlock()
	return p.mode
}

// String describes the port, e.g. "serial /dev/ttyUSB0 115200 8N1".
func (p *Port) String() string { return "serial " + p.path + " " + p.Mode().String() }

func (p *Port) closedErr() error {
	return newError(p.path, ErrClosed, "", nil)
}

// toSerialMode converts a validated, normalized Mode to go.bug.st/serial's.
func toSerialMode(m Mode) *serial.Mode {
	sm := &serial.Mode{BaudRate: m.Baud, DataBits: m.DataBits}
	switch m.Parity {
	case ParityOdd:
		sm.Parity = serial.OddParity
	case ParityEven:
		sm.Parity = serial.EvenParity
	case ParityMark:
		sm.Parity = serial.MarkParity
	case ParitySpace:
		sm.Parity = serial.SpaceParity
	default:
		sm.Parity = serial.NoParity
	}
	switch m.StopBits {
	case StopBitsOneAndHalf:
		sm.StopBits = serial.OnePointFiveStopBits
	case StopBitsTwo:
		sm.StopBits = serial.TwoStopBits
	default:
		sm.StopBits = serial.OneStopBit
	}
	return sm
}

// serialOpenError turns an error from serial.Open into an *Error.
func serialOpenError(path string, m Mode, err error) error {
	var pe *serial.PortError
	if !errors.As(err, &pe) {
		return openError(path, err)
	}
	switch pe.Code() {
	case serial.PortBusy:
		return busyError(path, err)
	case serial.PermissionDenied:
		return permissionError(path, err)
	case serial.PortNotFound:
		return notFoundError(path, err)
	case serial.InvalidSpeed:
		return newError(path, ErrUnsupported, fmt.Sprintf("baud rate %d not supported by the device or operating system", m.Baud), err)
	case serial.InvalidDataBits, serial.InvalidParity, serial.InvalidStopBits:
		return newError(path, ErrUnsupported, fmt.Sprintf("line settings %s not supported: %v", m, err), err)
	case serial.InvalidSerialPort:
		if strings.Contains(err.Error(), "configuring port") {
			return newError(path, ErrUnsupported, fmt.Sprintf("line settings %s refused by the device or operating system (is baud rate %d supported?): %v", m, m.Baud, err), err)
		}
		return newError(path, ErrNotSerial, "not a usable serial device: "+err.Error(), err)
	}
	return newError(path, ErrNotSerial, "cannot open: "+err.Error(), err)
}

func notFoundError(path string, cause error) error {
	return newError(path, ErrNotFound, `no such device (is it plugged in? "sockmux ports" lists the serial ports)`, cause)
}

func busyError(path string, cause error) error {
	return newError(path, ErrBusy, "device busy: another program has it open (a terminal program, another sockmux, ModemManager?)", cause)
}

func permissionError(path string, cause error) error {
	return newError(path, ErrPermission, "permission denied: "+permissionHint, cause)
}
