// Package serialport is sockmux's serial line transport: a link.Driver for a
// serial device (a UART, a USB serial adapter, a pseudo-terminal such as an
// end of "sockmux cable"), built on go.bug.st/serial.
//
// New opens and configures the device at once so that mistakes (a wrong
// path, a busy device, missing permissions, a refused baud rate) are
// reported at start-up in one clear line. The Driver then reopens the same
// path whenever the link asks, waiting for an unplugged adapter to come back;
// given a USB adapter's identity (see Identity) it finds the adapter again
// under whatever name it comes back with. List describes the machine's
// ports without opening any.
package serialport
