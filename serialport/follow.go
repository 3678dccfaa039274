package serialport

import (
	"fmt"
)

// tracking is what a Driver remembers of the adapter it opens.
type tracking struct {
	known     Identity // the USB adapter first opened at the path; zero if none
	knownDesc string   // known with its description, for log lines
	refused   string   // the last refusal logged, so that it is logged once
	device    string   // the device node opened last, e.g. /dev/ttyUSB1
}

// openDevice opens the device the driver's path names now: the port an
// identity resolves to, or the path itself unless another USB adapter than
// the one first opened there has appeared at it. The caller holds openMu
// (or is New).
func (d *Driver) openDevice() (*Port, error) {
	path, info, err := d.resolve()
	if err != nil {
		if e, ok := err.(*Error); ok && e.Kind == ErrOtherDevice {
			if e.Msg != d.track.refused {
				d.log.Warn(err.Error())
				d.track.refused = e.Msg
			}
		} else {
			d.track.refused = ""
		}
		return nil, err
	}
	d.track.refused = ""
	p, err := OpenPortWith(path, d.Mode(), d.ext.opts)
	if err != nil {
		return nil, err
	}
	id := identityOf(info)
	if d.ident == nil && d.track.known.IsZero() && !id.IsZero() {
		d.track.known, d.track.knownDesc = id, describe(info)
	}
	device := path
	if info.Name != "" {
		device = info.Name
	}
	d.mu.Lock()
	d.track.device = device
	d.mu.Unlock()
	return p, nil
}

// resolve returns the path to open and, when known, what port it is.
func (d *Driver) resolve() (string, PortInfo, error) {
	if d.ident != nil {
		ports, err := d.sys.List()
		if err != nil {
			return "", PortInfo{}, newError(d.path, ErrNotFound, err.Error(), err)
		}
		p, err := Find(ports, *d.ident)
		if err != nil {
			return "", PortInfo{}, err
		}
		return p.Name, p, nil
	}
	info, ok := d.sys.lookupPath(d.path)
	if !ok {
		return d.path, PortInfo{}, nil
	}
	if got := identityOf(info); !d.track.known.IsZero() && !got.IsZero() && got != d.track.known {
		return "", info, newError(d.path, ErrOtherDevice, fmt.Sprintf(
			"expected adapter %s, found %s; not opening it. To use the adapter found, start sockmux with --comm %s; to follow the expected one wherever it is plugged in, with --comm %s",
			d.track.knownDesc, describe(info), got, d.track.known), nil)
	}
	return d.path, info, nil
}

// where says where the device was opened when that is not the path the
// driver was made with, e.g. " at /dev/ttyUSB1".
func (d *Driver) where() string {
	dev := d.Device()
	if dev == "" || dev == d.path {
		return ""
	}
	return " at " + dev
}

// Device returns the device node the driver opened last, e.g.
// /dev/ttyUSB1 for an identity or a /dev/serial/by-id path, or the path
// itself when the node is not known (a pseudo-terminal).
func (d *Driver) Device() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.track.device
}
