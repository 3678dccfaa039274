package serialport

import "fmt"

// SetSpeed switches the open port to baud bits per second at once
// (tcsetattr, TCSANOW: bytes still queued for sending go out at the new
// speed), keeping the rest of its settings. Where the operating system
// reads back the speed it set (Linux) a driver that picks another speed
// instead is refused: the port is put back and SetSpeed fails with an
// *Error of kind ErrUnsupported, as for a speed the driver rejects. On
// failure the port keeps its old speed; on Windows, where a speed the
// driver refuses closes the port (go.bug.st/serial), the port fails its
// next Read or Write instead and the Driver reopens it at its old speed.
func (p *Port) SetSpeed(baud int) error {
	p.setMu.Lock()
	defer p.setMu.Unlock()
	if p.closed.Load() {
		return p.closedErr()
	}
	old := p.Mode()
	m := old
	m.Baud = baud
	if err := m.Validate(); err != nil {
		return newError(p.path, ErrUnsupported, err.Error(), err)
	}
	if err := p.sys.sp.SetMode(toSerialMode(m)); err != nil {
		_ = p.sys.sp.SetMode(toSerialMode(old))
		if p.closed.Load() {
			return p.closedErr()
		}
		return newError(p.path, ErrUnsupported, fmt.Sprintf("baud rate %d refused by the device or operating system: %v", baud, err), err)
	}
	if actual, ok := p.speedNow(); ok && !speedClose(actual, baud) {
		_ = p.sys.sp.SetMode(toSerialMode(old))
		return newError(p.path, ErrUnsupported, fmt.Sprintf("baud rate %d not supported: the device runs at %d instead", baud, actual), nil)
	}
	p.modeMu.Lock()
	p.mode = m
	p.modeMu.Unlock()
	return nil
}

// SetSpeed switches the driver's port to baud bits per second under the
// open transport (see Port.SetSpeed) and remembers the speed for every
// later reopen; Properties reports the new line rate. With no port open
// (the link waiting for the device) only the remembered speed changes.
// On failure nothing changes.
func (d *Driver) SetSpeed(baud int) error {
	m := d.Mode()
	m.Baud = baud
	if err := m.Validate(); err != nil {
		return newError(d.path, ErrUnsupported, err.Error(), err)
	}
	if p := d.openPort(); p != nil {
		if err := p.SetSpeed(baud); err != nil && !p.closed.Load() {
			return err
		}
	}
	d.mu.Lock()
	d.mode.Baud = baud
	d.mu.Unlock()
	return nil
}

// Speed is the speed the driver's port runs at (or opens at next), in
// bits per second.
func (d *Driver) Speed() int { return d.Mode().Baud }

// AcceptedSpeeds tries each of speeds on the driver's port and returns,
// in their order, those the device and operating system accept (see
// Port.SetSpeed); the port is then set back to the speed it had. It is
// for start-up, before the link uses the port: what crosses the line
// meanwhile is garbled. With no port open, and on Windows (where a
// refused speed closes the port), it returns speeds unchecked.
func (d *Driver) AcceptedSpeeds(speeds []int) []int {
	p := d.openPort()
	if p == nil || !probeSpeeds {
		return append([]int(nil), speeds...)
	}
	was := p.Mode().Baud
	var ok []int
	for _, s := range speeds {
		if p.SetSpeed(s) == nil {
			ok = append(ok, s)
		}
	}
	_ = p.SetSpeed(was)
	return ok
}

// openPort is the port the driver handed out last, or the one New opened
// if none was handed out yet; nil when it is closed.
func (d *Driver) openPort() *Port {
	d.ext.mu.Lock()
	p := d.ext.cur
	d.ext.mu.Unlock()
	if p == nil {
		d.mu.Lock()
		p = d.first
		d.mu.Unlock()
	}
	if p == nil || p.closed.Load() {
		return nil
	}
	return p
}

// speedClose reports whether the speed the device runs at is within 2% of
// the one asked for, the tolerance of an asynchronous serial line.
func speedClose(actual, want int) bool {
	d := actual - want
	if d < 0 {
		d = -d
	}
	return d*50 <= want
}
