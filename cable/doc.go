// Package cable is a virtual null-modem cable: two pseudo-terminals whose
// slave ends appear at two paths (say /tmp/ttyA and /tmp/ttyB) and behave
// like the two ends of a serial cable between two UARTs.
//
// Bytes written at one end arrive at the other, paced like a UART at the
// configured baud rate: the cable takes bytes off the sending side only as
// fast as the line would carry them, so bytes written faster pile up in the
// kernel's terminal buffers and a writer that keeps writing eventually
// blocks, as with a real port. When the receiving side does not read, the
// cable stops carrying rather than drop bytes, as if RTS/CTS were wired.
//
// Faults can be injected on the line, independently in each direction: bit
// errors, dropped bytes, inserted garbage, duplicated chunks and noise
// bursts; and the whole cable can be unplugged for a while, on a schedule or
// on demand: both paths vanish, ports open on them get a hang-up, and new
// pseudo-terminals appear at the same paths when it is plugged back in.
//
// Cables need pseudo-terminals: they work on Linux, macOS and the BSDs.
package cable
