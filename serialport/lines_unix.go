//go:build linux || darwin || freebsd || openbsd

package serialport

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sockmux/sockmux/internal/fdctl"
	"golang.org/x/sys/unix"
)

// setupLines applies Options at open: HUPCL cleared when DTR or RTS were
// given explicitly, then DTR and RTS set together in one TIOCMSET. The
// kernel has already raised both when the device was opened (Linux, macOS
// and the BSDs all do, and no program can stop it), so --dtr off and
// --rts off lower them within a moment of the open.
//
// A device without modem-control lines (a pseudo-terminal) refuses the
// modem ioctls; that is recorded, not an error, unless a carrier line was
// asked for, which such a device cannot report.
func (p *Port) setupLines() error {
	o := p.ext.opts
	var did []string
	if o.explicitLines() {
		if err := fdctl.Control(p.sys.f, func(fd int) error {
			t, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
			if err != nil {
				return err
			}
			if t.Cflag&unix.HUPCL == 0 {
				return nil
			}
			t.Cflag &^= unix.HUPCL
			return unix.IoctlSetTermios(fd, ioctlSetTermios, t)
		}); err != nil {
			return newError(p.path, ErrUnsupported, "cannot clear HUPCL (to keep DTR and RTS as set when the port closes): "+err.Error(), err)
		}
		did = append(did, "HUPCL cleared")
	}
	err := fdctl.Control(p.sys.f, func(fd int) error {
		bits, err := unix.IoctlGetInt(fd, unix.TIOCMGET)
		if err != nil {
			return err
		}
		set := func(bit int, on bool) {
			if on {
				bits |= bit
			} else {
				bits &^= bit
			}
		}
		set(unix.TIOCM_DTR, o.DTR.on())
		set(unix.TIOCM_RTS, o.RTS.on())
		return unix.IoctlSetPointerInt(fd, unix.TIOCMSET, bits)
	})
	switch {
	case err == nil:
		did = append([]string{"DTR " + o.DTR.String() + ", RTS " + o.RTS.String()}, did...)
	case isNoModem(err):
		p.ext.noModem = true
		if o.Carrier != "" && o.modem == nil {
			return newError(p.path, ErrUnsupported, fmt.Sprintf("--carrier %s needs a device with modem-status lines; this one has none (a pseudo-terminal?)", o.Carrier), err)
		}
		did = append([]string{"no modem-control lines (a pseudo-terminal?): DTR and RTS not set"}, did...)
	default:
		return newError(p.path, ErrUnsupported, fmt.Sprintf("cannot set DTR %s and RTS %s: %v", o.DTR, o.RTS, err), err)
	}
	p.ext.linesMsg = strings.Join(did, "; ")
	return nil
}

// isNoModem reports whether err says the device has no modem lines.
func isNoModem(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)
}

// readModemLines reads the lines with TIOCMGET.
func (p *Port) readModemLines() (ModemLines, error) {
	var bits int
	err := fdctl.Control(p.sys.f, func(fd int) error {
		var err error
		bits, err = unix.IoctlGetInt(fd, unix.TIOCMGET)
		return err
	})
	if err != nil {
		return ModemLines{}, err
	}
	return ModemLines{
		DTR: bits&unix.TIOCM_DTR != 0,
		RTS: bits&unix.TIOCM_RTS != 0,
		DCD: bits&unix.TIOCM_CD != 0,
		DSR: bits&unix.TIOCM_DSR != 0,
		CTS: bits&unix.TIOCM_CTS != 0,
		RI:  bits&unix.TIOCM_RI != 0,
	}, nil
}
