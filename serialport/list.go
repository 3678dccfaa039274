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
	// Product describes the device, e.g. "FT232R USB UART", when known.
	Product string `json:"product,omitempty"`
	// ByID is a path to the same device that stays the same across reboots
	// and replugging (/dev/serial/by-id/... on Linux), when there is one.
	ByID string `json:"by_id,omitempty"`
}

// List returns the serial ports of this machine, sorted by name. USB details
// come from go.bug.st/serial/enumerator; on macOS without cgo only the names
// are known.
func List() ([]PortInfo, error) {
	ports, err := listPorts()
	if err != nil {
		return nil, err
	}
	byID := stableNames()
	for i := range ports {
		ports[i].ByID = byID[ports[i].Name]
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].Name < ports[j].Name })
	return ports, nil
}
