//go:build freebsd || openbsd

package serialport

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// listPorts lists the callout devices in the device directory by name
// (/dev/cuau0 and /dev/cuaU0 on FreeBSD, /dev/cua00 and /dev/cuaU0 on
// OpenBSD), leaving out FreeBSD's .init and .lock control nodes. It opens
// none of them; USB details are not known.
func (s System) listPorts() ([]PortInfo, error) {
	dir := s.devRoot()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing serial ports: %w", err)
	}
	var ports []PortInfo
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, "cua") || strings.HasSuffix(n, ".init") || strings.HasSuffix(n, ".lock") || e.IsDir() {
			continue
		}
		ports = append(ports, PortInfo{Name: filepath.Join(dir, n), IsUSB: strings.HasPrefix(n, "cuaU")})
	}
	return ports, nil
}
