//go:build windows || (darwin && cgo)

package serialport

import (
	"fmt"

	"go.bug.st/serial/enumerator"
)

// listPorts asks the operating system's device registry (SetupAPI on
// Windows, IOKit on macOS); without probe filters the enumerator reads
// properties only and opens neither the ports nor the USB devices.
func (System) listPorts() ([]PortInfo, error) {
	details, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return nil, fmt.Errorf("listing serial ports: %w", err)
	}
	ports := make([]PortInfo, 0, len(details))
	for _, d := range details {
		if d == nil {
			continue
		}
		ports = append(ports, PortInfo{
			Name:         d.Name,
			IsUSB:        d.IsUSB,
			VID:          d.VID,
			PID:          d.PID,
			SerialNumber: d.SerialNumber,
			Manufacturer: d.Manufacturer,
			Product:      d.Product,
		})
	}
	return ports, nil
}
