package mux

import "fmt"

// Bounds on Config's fields (see Verify).
const (
	// MaxStreamsLimit is the most MaxStreams may be: each stream may
	// hold a window of received data, and its state, so this bounds what
	// a far end can make the mux keep.
	MaxStreamsLimit = 1 << 20
	// MaxStreamWindow is the most StreamWindow may be; a WINDOW
	// message's increment is at most 1<<31.
	MaxStreamWindow = 1 << 30
)

// ConfigError is what Config.Verify reports: the fields at fault (their
// names in Config, e.g. "MaxStreams") and what is wrong with them, so
// that a program can name its own settings for them.
type ConfigError struct {
	Fields []string
	Err    error
}

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func fieldError(field, format string, args ...any) error {
	return &ConfigError{Fields: []string{field}, Err: fmt.Errorf(format, args...)}
}

// Verify reports the first field of c that is out of range, with an error
// (a *ConfigError) that names the field, its value and the range, as yamux's VerifyConfig
// does. A zero field is always valid: it means the default. endpoint.New
// verifies its mux configuration; New does not, and for library use
// treats a negative limit as its default and raises a StreamWindow below
// InitialWindow to it.
func (c Config) Verify() error {
	switch {
	case c.StreamWindow != 0 && (c.StreamWindow < InitialWindow || c.StreamWindow > MaxStreamWindow):
		return fieldError("StreamWindow", "mux: StreamWindow %d: want %d (InitialWindow) to %d bytes", c.StreamWindow, InitialWindow, MaxStreamWindow)
	case c.MaxStreams < 0 || c.MaxStreams > MaxStreamsLimit:
		return fieldError("MaxStreams", "mux: MaxStreams %d: want 1 to %d (0: %d)", c.MaxStreams, MaxStreamsLimit, DefaultMaxStreams)
	case c.MaxBuffered != 0 && c.MaxBuffered < InitialWindow:
		return fieldError("MaxBuffered", "mux: MaxBuffered %d: want at least %d (InitialWindow), or no stream could open (0: %d)", c.MaxBuffered, InitialWindow, DefaultMaxBuffered)
	case c.AcceptBacklog < 0:
		return fieldError("AcceptBacklog", "mux: AcceptBacklog %d: must not be negative (0: %d, at most MaxStreams)", c.AcceptBacklog, DefaultAcceptBacklog)
	case c.MaxListens < 0:
		return fieldError("MaxListens", "mux: MaxListens %d: must not be negative (0: %d)", c.MaxListens, DefaultMaxListens)
	case c.MaxReplyQueue != 0 && c.MaxReplyQueue < maxControl:
		return fieldError("MaxReplyQueue", "mux: MaxReplyQueue %d: want at least %d bytes, one control message (0: %d)", c.MaxReplyQueue, maxControl, DefaultMaxReplyQueue)
	}
	return nil
}
