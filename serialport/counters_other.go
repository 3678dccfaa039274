//go:build !linux

package serialport

import "errors"

// readDriverCounts fails: only Linux counts receive errors per port
// (TIOCGICOUNT).
func (p *Port) readDriverCounts() (ErrorCounts, error) {
	return ErrorCounts{}, errors.New("receive error counters are only available on Linux")
}
