package pipe

import "golang.org/x/sys/unix"

// fifoSize is the buffer Linux gives a FIFO we open (F_SETPIPE_SZ), up to
// what /proc/sys/fs/pipe-max-size allows an unprivileged process (1 MiB
// by default): with the default 64 KiB, two large frames fill it and every
// frame costs the reader and the writer a wake-up.
const fifoSize = 1 << 20

// growFIFO asks for a larger pipe buffer; a refusal leaves the default.
func growFIFO(fd int) { _, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, fifoSize) }
