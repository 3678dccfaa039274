// Package fdctl runs system calls on an open file's descriptor without
// taking the file out of Go's poller (the serial port driver and the
// virtual cable both set terminal modes this way).
package fdctl
