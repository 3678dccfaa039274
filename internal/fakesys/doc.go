// Package fakesys builds fake Linux sysfs and /dev trees in a directory,
// with the serial ports a test needs (built-in UARTs, USB serial adapters,
// CDC-ACM devices, /dev/serial/by-id links), so that serial port listing
// and identity lookup can be tested without reading the machine's own
// /sys or touching its serial ports. Device nodes are symbolic links to
// whatever the test chooses, typically a pseudo-terminal of a virtual
// cable.
package fakesys
