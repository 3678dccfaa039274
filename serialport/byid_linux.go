package serialport

import (
	"os"
	"path/filepath"
)

const byIDDir = "/dev/serial/by-id"

// stableNames maps device paths to their /dev/serial/by-id links.
func stableNames() map[string]string {
	entries, err := os.ReadDir(byIDDir)
	if err != nil {
		return nil
	}
	m := make(map[string]string, len(entries))
	for _, e := range entries {
		link := filepath.Join(byIDDir, e.Name())
		target, err := filepath.EvalSymlinks(link)
		if err != nil {
			continue
		}
		m[target] = link
	}
	return m
}
