package serialport

import "errors"

// Kinds of failure. Errors returned by this package match one of them with
// errors.Is.
var (
	// ErrNotFound: the device path does not exist or has no device behind it.
	ErrNotFound = errors.New("no such device")
	// ErrNotSerial: the path exists but is not a serial device (a regular
	// file, a directory, a character device that is not a terminal).
	ErrNotSerial = errors.New("not a serial device")
	// ErrBusy: another program has the device open.
	ErrBusy = errors.New("device busy")
	// ErrPermission: the user may not open the device.
	ErrPermission = errors.New("permission denied")
	// ErrUnsupported: the operating system or the device refused a setting
	// (a baud rate, 1.5 stop bits, mark or space parity, flow control), or
	// the operation is not available on this device.
	ErrUnsupported = errors.New("not supported")
	// ErrDisconnected: an open port's device went away (USB adapter
	// unplugged, pseudo-terminal master closed) or was replaced by another
	// device at the same path.
	ErrDisconnected = errors.New("device disconnected")
	// ErrClosed: the port was closed by its Close method.
	ErrClosed = errors.New("port closed")
)

// Error describes a failure on one serial device.
type Error struct {
	// Path is the device path as given, e.g. /dev/ttyUSB0 or COM3.
	Path string
	// Kind is one of the Err* variables of this package.
	Kind error
	// Msg says what went wrong, without the path, e.g. "device busy:
	// another program has it open".
	Msg string
	// Err is the underlying operating system error, if any.
	Err error
}

// Error formats e as "serial PATH: MSG".
func (e *Error) Error() string {
	return "serial " + e.Path + ": " + e.Msg
}

// Unwrap returns the kind and the underlying error, so that errors.Is
// matches both, e.g. errors.Is(err, ErrBusy).
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

func newError(path string, kind error, msg string, cause error) *Error {
	if msg == "" {
		msg = kind.Error()
	}
	return &Error{Path: path, Kind: kind, Msg: msg, Err: cause}
}

// errMsg returns the message part of err without the "serial PATH: " prefix
// when err is an *Error.
func errMsg(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return err.Error()
}
