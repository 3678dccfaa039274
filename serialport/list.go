package serialport

import "sort"

// PortInfo describes a serial port found by List.
type PortInfo struct {
	// Name is the device path: /dev/ttyUSB0, /dev/cu.usbserial-1420, COM3.
	Name string `json:"name"`
	// IsUSB is true for a USB serial adapter or USB device.
	IsUSB bool `json:"usb"`
	// VID and PID are the USB vendor and product IDs in hex, e.g. "0403"
	// and "6001" for an FTDI FT232R, when known.
	VID string `json:"vid,omitempty"`
	PID string `json:"pid,omitempty"`
	// SerialNumber is the USB serial number, when known.
	SerialNumber string `json:"serial_number,omitempty"`
	// Manufacturer is the USB manufacturer string, e.g. "FTDI", when known.
	Manufacturer string `json:"manufacturer,omitempty"`
	// Product describes the device, e.g. "FT232R USB UART", when known.
	Product string `json:"product,omitempty"`
	// Driver is the kernel driver, e.g. "ftdi_sio", "cdc_acm", "serial8250"
	// (Linux).
	Driver string `json:"driver,omitempty"`
	// UART is the UART type of a built-in port, e.g. "16550A" (Linux).
	UART string `json:"uart,omitempty"`
	// ByID is a path to the same device that stays the same across reboots
	// and replugging (/dev/serial/by-id/... on Linux), when there is one.
	ByID string `json:"by_id,omitempty"`
	// ByPath names the USB socket or bus position the device is plugged
	// into (/dev/serial/by-path/... on Linux), when there is one.
	ByPath string `json:"by_path,omitempty"`
}

// System is where a machine's serial ports are looked up. Nothing in it
// opens a port: listing reads what the operating system already knows
// (sysfs and /dev/serial on Linux), so that it neither changes the settings
// of a port in use nor pulses the DTR line of a board behind one.
//
// The zero System is the running machine's. Tests point the roots at fake
// trees.
type System struct {
	// SysRoot is where sysfs is mounted, "/sys" if empty (Linux).
	SysRoot string
	// DevRoot is the device directory, "/dev" if empty (Linux, the BSDs).
	DevRoot string
}

// List returns the serial ports of this machine, sorted by name; see
// System.List.
func List() ([]PortInfo, error) { return System{}.List() }

// List returns the serial ports of s, sorted by name, without opening any.
// On Linux it reads sysfs: the driver, a built-in port's UART type (names
// with no UART behind them, such as the spare ttyS4 to ttyS31 of most PCs,
// are left out), a USB device's IDs, serial number, manufacturer and
// product, and the /dev/serial/by-id and by-path links. On macOS and
// Windows the USB details come from the operating system's device registry
// (on macOS without cgo only the names are known); on the BSDs only the
// names of the callout devices (/dev/cua*) are known.
func (s System) List() ([]PortInfo, error) {
	ports, err := s.listPorts()
	if err != nil {
		return nil, err
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].Name < ports[j].Name })
	return ports, nil
}
