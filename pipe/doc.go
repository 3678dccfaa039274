// Package pipe carries a sockmux link over pipes on one host: a pair of
// one-way named pipes (DeleGate SockMux's commin@IN and commout@OUT), or one
// two-way channel (comm@PATH): a Unix domain socket, a character device, or
// on Windows a duplex named pipe \\.\pipe\NAME.
//
// A Driver only opens the channel, reports promptly when it breaks and opens
// it again when the link asks. Framing, checksums, retransmission, the
// handshake and session resumption all belong to package link: a peer that
// restarted is recognised by the link's handshake, not here.
//
// # POSIX
//
// NewPair creates a missing IN or OUT as a FIFO with mode 0600 and accepts an
// existing FIFO or character device. Open opens IN for reading and OUT for
// writing without ever blocking uncancellably: it waits (polling with a
// backoff from 20 ms to 250 ms, honouring ctx) until the peer has opened the
// other end of both FIFOs. When the peer goes away, Read reports the end of
// IN (an error wrapping io.EOF) and Write reports EPIPE on OUT; the link then
// closes the transport and calls Open again, which waits for the peer to come
// back. A peer that is merely stopped (SIGSTOP) keeps its ends open, so reads
// just block.
//
// NewComm accepts a character device, opened read-write, or a Unix domain
// socket path. For a socket the two sides agree on who listens: Open first
// dials PATH; if nothing accepts there, the side that takes an exclusive
// flock on PATH.lock removes a stale socket file, listens on PATH and keeps
// listening until Driver.Close, while the other side keeps dialling. The
// listener serves one peer at a time: a newly accepted peer replaces the
// previous one, whose transport is closed.
//
// # Windows
//
// Every path is a named pipe \\.\pipe\NAME. The side that comes first creates
// the pipe's only instance (CreateNamedPipe) and waits for the other, which
// opens it as a client (CreateFile); when the transport breaks, both sides
// close their handles and decide again. Pair mode uses an inbound or outbound
// pipe per direction, NewComm one duplex pipe.
package pipe
