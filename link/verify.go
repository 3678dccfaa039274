package link

import (
	"fmt"
	"slices"
	"time"
)

// MaxPayloadLimit is the most Config.MaxPayload may be: a 32 KiB write and
// its headers fit one frame, and FRAGMENT lengths are 16-bit.
const MaxPayloadLimit = maxPayload

// Bounds on Config.Window.
const (
	MinWindow = 2
	MaxWindow = 4096
)

// ConfigError is what Config.Verify reports: the fields at fault (their
// names in Config, e.g. "DeadTimeout") and what is wrong with them, so
// that a program can name its own settings for them.
type ConfigError struct {
	Fields []string
	Err    error
}

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func fieldError(fields []string, format string, args ...any) error {
	return &ConfigError{Fields: fields, Err: fmt.Errorf(format, args...)}
}

// Verify reports the first field of c that is out of range, with an error
// (a *ConfigError) that names the field, its value and the range, as
// yamux's VerifyConfig does. A zero field is always valid: it means the
// default (see DefaultConfig). endpoint.New verifies its link
// configuration; New does not, and clamps an out-of-range MaxPayload or
// Window into range instead, for library use.
func (c Config) Verify() error {
	switch {
	case c.MaxPayload != 0 && (c.MaxPayload < MinPayload || c.MaxPayload > MaxPayloadLimit):
		return fieldError([]string{"MaxPayload"}, "link: MaxPayload %d: want %d to %d bytes (0: sized to the transport)", c.MaxPayload, MinPayload, MaxPayloadLimit)
	case c.Window != 0 && (c.Window < MinWindow || c.Window > MaxWindow):
		return fieldError([]string{"Window"}, "link: Window %d: want %d to %d frames (0: sized to the transport)", c.Window, MinWindow, MaxWindow)
	case c.Secret != nil && len(c.Secret) != KeySize:
		return fieldError([]string{"Secret"}, "link: Secret of %d bytes: want %d (or none)", len(c.Secret), KeySize)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"KeepAlive", c.KeepAlive},
		{"DeadTimeout", c.DeadTimeout},
		{"HandshakeTimeout", c.HandshakeTimeout},
		{"ResumeTimeout", c.ResumeTimeout},
	} {
		if d.v < 0 {
			return fieldError([]string{d.name}, "link: %s %v: must not be negative (0: the default)", d.name, d.v)
		}
	}
	if c.KeepAlive > 0 && c.DeadTimeout > 0 && c.DeadTimeout <= c.KeepAlive {
		return fieldError([]string{"DeadTimeout", "KeepAlive"}, "link: DeadTimeout %v is not longer than KeepAlive %v: an idle link would be declared dead before it pings", c.DeadTimeout, c.KeepAlive)
	}
	if err := checkAEADs(c.AEADs); err != nil {
		return &ConfigError{Fields: []string{"AEADs"}, Err: err}
	}
	if !slices.Contains(Compressions, c.Compress) {
		return fieldError([]string{"Compress"}, "link: Compress %d: want CompressAuto, CompressOff, CompressFast or CompressBest", int(c.Compress))
	}
	if !slices.Contains(FECModes, c.FEC) {
		return fieldError([]string{"FEC"}, "link: FEC %d: want FECAuto or FECOff", int(c.FEC))
	}
	if err := checkFECBlock(c.FECBlock); err != nil {
		return &ConfigError{Fields: []string{"FECBlock"}, Err: err}
	}
	if err := checkServices(c.Services); err != nil {
		return &ConfigError{Fields: []string{"Services"}, Err: err}
	}
	if err := CheckName(c.Name); c.Name != "" && err != nil {
		return &ConfigError{Fields: []string{"Name"}, Err: err}
	}
	if err := CheckName(c.PeerName); c.PeerName != "" && err != nil {
		return &ConfigError{Fields: []string{"PeerName"}, Err: err}
	}
	return nil
}
