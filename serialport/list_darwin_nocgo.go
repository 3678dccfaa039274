//go:build darwin && !cgo

package serialport

import (
	"fmt"

	"go.bug.st/serial"
)

// listPorts lists names only: USB details on macOS need cgo (IOKit). It
// opens none of the ports (go.bug.st/serial probes only Linux ttyS names).
func (System) listPorts() ([]PortInfo, error) {
	names, err := serial.GetPortsList()
	if err != nil {
		return nil, fmt.Errorf("listing serial ports: %w", err)
	}
	ports := make([]PortInfo, 0, len(names))
	for _, n := range names {
		ports = append(ports, PortInfo{Name: n})
	}
	return ports, nil
}
