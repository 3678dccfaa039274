package control

import "syscall"

// rss is the process's peak resident set size (macOS tells getrusage's
// maxrss in bytes; the current size would need cgo).
func rss() (bytesNow uint64, peak bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil || ru.Maxrss < 0 {
		return 0, false
	}
	return uint64(ru.Maxrss), true
}
