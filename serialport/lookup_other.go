//go:build !linux

package serialport

import (
	"os"
	"path/filepath"
	"strings"
)

// lookupPath describes the port that path names, from the operating
// system's list of ports (see System.List); ok is false when the path is
// not among them.
func (s System) lookupPath(path string) (PortInfo, bool) {
	ports, err := s.listPorts()
	if err != nil {
		return PortInfo{}, false
	}
	want := path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		want = real
	}
	wfi, werr := os.Stat(want)
	for _, p := range ports {
		if strings.EqualFold(p.Name, want) {
			return p, true
		}
		if werr == nil {
			if fi, err := os.Stat(p.Name); err == nil && os.SameFile(fi, wfi) {
				return p, true
			}
		}
	}
	return PortInfo{}, false
}
