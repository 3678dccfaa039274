package serialport

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of failure of a device identity (see Identity).
var (
	// ErrAmbiguous: an identity matches more than one port.
	ErrAmbiguous = errors.New("ambiguous identity")
	// ErrOtherDevice: the path names another adapter than the one the
	// driver first opened there, or than the identity asked for.
	ErrOtherDevice = errors.New("a different adapter")
)

// Identity names a USB serial adapter by what it is rather than by the
// name the operating system gave it: its USB vendor and product IDs and
// serial number. Its forms, as --comm takes them:
//
//	usb:VID:PID:SERIAL  e.g. usb:0403:6001:A10K3ZP
//	usb:VID:PID         the one adapter of that kind
//	serial:SERIAL       e.g. serial:A10K3ZP, whatever its IDs
//
// VID and PID are 4 hexadecimal digits (any case); the serial number is
// matched exactly.
type Identity struct {
	VID, PID string // lower-case hex; empty in the serial: form
	Serial   string // empty in the usb:VID:PID form
}

// IsIdentity reports whether s is written as an identity (it starts with
// "usb:" or "serial:"), well formed or not; ParseIdentity says whether it
// is well formed.
func IsIdentity(s string) bool {
	return strings.HasPrefix(s, "usb:") || strings.HasPrefix(s, "serial:")
}

// ParseIdentity parses an identity in one of the forms Identity lists.
func ParseIdentity(s string) (Identity, error) {
	bad := func(why string) (Identity, error) {
		return Identity{}, fmt.Errorf("device identity %q: %s; the forms are usb:VID:PID:SERIAL, usb:VID:PID and serial:SERIAL, e.g. usb:0403:6001:A10K3ZP (sockmux ports prints them)", s, why)
	}
	switch {
	case strings.HasPrefix(s, "serial:"):
		sn := strings.TrimPrefix(s, "serial:")
		if sn == "" {
			return bad("the serial number is empty")
		}
		return Identity{Serial: sn}, nil
	case strings.HasPrefix(s, "usb:"):
		parts := strings.SplitN(strings.TrimPrefix(s, "usb:"), ":", 3)
		if len(parts) < 2 {
			return bad("want a vendor and a product ID")
		}
		id := Identity{VID: strings.ToLower(parts[0]), PID: strings.ToLower(parts[1])}
		for _, f := range []struct{ what, v string }{{"vendor ID", id.VID}, {"product ID", id.PID}} {
			if !isHex4(f.v) {
				return bad(fmt.Sprintf("the %s %q is not 4 hexadecimal digits", f.what, f.v))
			}
		}
		if len(parts) == 3 {
			if parts[2] == "" {
				return bad("the serial number after the product ID is empty")
			}
			id.Serial = parts[2]
		}
		return id, nil
	}
	return bad(`it starts with neither "usb:" nor "serial:"`)
}

func isHex4(s string) bool {
	if len(s) != 4 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// String formats the identity in the form it was written in.
func (id Identity) String() string {
	switch {
	case id.VID == "":
		return "serial:" + id.Serial
	case id.Serial == "":
		return "usb:" + id.VID + ":" + id.PID
	}
	return "usb:" + id.VID + ":" + id.PID + ":" + id.Serial
}

// IsZero reports whether id names nothing (a port that is not USB).
func (id Identity) IsZero() bool { return id == Identity{} }

// Matches reports whether the port p is the adapter id names.
func (id Identity) Matches(p PortInfo) bool {
	if id.IsZero() || !p.IsUSB {
		return false
	}
	if id.VID != "" && (id.VID != strings.ToLower(p.VID) || id.PID != strings.ToLower(p.PID)) {
		return false
	}
	return id.Serial == "" || id.Serial == p.SerialNumber
}

// identityOf is the full identity of the port: its IDs and serial number
// when it is a USB device, else zero.
func identityOf(p PortInfo) Identity {
	if !p.IsUSB || p.VID == "" || p.PID == "" {
		return Identity{}
	}
	return Identity{VID: strings.ToLower(p.VID), PID: strings.ToLower(p.PID), Serial: p.SerialNumber}
}

// Identity returns the full identity of the port (usb:VID:PID:SERIAL, or
// usb:VID:PID for an adapter without a serial number), or a zero Identity
// when the port is not a USB device or its IDs are unknown.
func (p PortInfo) Identity() Identity { return identityOf(p) }

// describe is the port's identity and description for log lines, e.g.
// "usb:0403:6001:A10K3ZP (FTDI FT232R USB UART)".
func describe(p PortInfo) string {
	s := identityOf(p).String()
	if d := p.Description(); d != "" {
		s += " (" + d + ")"
	}
	return s
}

// Description is the manufacturer and product, e.g. "FTDI FT232R USB
// UART", or a built-in port's UART type, e.g. "16550A UART", when known.
func (p PortInfo) Description() string {
	var parts []string
	if p.Manufacturer != "" && !strings.HasPrefix(p.Product, p.Manufacturer) {
		parts = append(parts, p.Manufacturer)
	}
	if p.Product != "" {
		parts = append(parts, p.Product)
	}
	if len(parts) == 0 && p.UART != "" {
		parts = append(parts, p.UART+" UART")
	}
	return strings.Join(parts, " ")
}

// Find returns the port of ports that id names. It fails with ErrNotFound
// when there is none and with ErrAmbiguous when there are several; either
// message lists the ports present.
func Find(ports []PortInfo, id Identity) (PortInfo, error) {
	var found []PortInfo
	for _, p := range ports {
		if id.Matches(p) {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return PortInfo{}, newError(id.String(), ErrNotFound, "no such adapter plugged in; "+present(ports), nil)
	}
	names := make([]string, len(found))
	for i, p := range found {
		names[i] = p.Name + " " + describe(p)
	}
	return PortInfo{}, newError(id.String(), ErrAmbiguous, fmt.Sprintf("%d adapters match: %s; give the full usb:VID:PID:SERIAL or a /dev/serial/by-id path", len(found), strings.Join(names, ", ")), nil)
}

// present lists the serial ports for an error message.
func present(ports []PortInfo) string {
	if len(ports) == 0 {
		return "no serial ports present"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = p.Name
		if id := identityOf(p); !id.IsZero() {
			s[i] += " " + describe(p)
		}
	}
	return "present: " + strings.Join(s, ", ")
}
