package control

import (
	"bytes"
	"os"
	"strconv"
)

// rss is the process's resident set size now, from /proc/self/statm.
func rss() (bytesNow uint64, peak bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), false
}
