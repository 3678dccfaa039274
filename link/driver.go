package link

import (
	"context"
	"io"
)

// Driver opens the transport a link runs over.
//
// Open is called when the link starts and again every time the transport
// breaks. It blocks until the transport is usable (dialled, accepted, the
// device node present, the peer opened its end of the pipe) or ctx ends.
// Each call returns a fresh transport; the link closes it when it breaks.
type Driver interface {
	Open(ctx context.Context) (io.ReadWriteCloser, error)
	// Properties describes the transport so the link can size frames,
	// windows, timers and pacing for it.
	Properties() Properties
	// String names the transport for logs, e.g. "tcp connect 10.0.0.1:9000".
	String() string
}

// Properties describes a transport to the link layer.
type Properties struct {
	// LineRate is the transport's raw rate in bytes per second (a serial
	// line at 115200 baud 8N1 carries 11520). Zero means fast or unknown:
	// the link then neither paces its writes nor sizes frames by time.
	LineRate int
	// Reliable transports (TCP) never corrupt, drop, insert or reorder
	// bytes while they are up, so the link skips timeout retransmission
	// and only resends what was unacknowledged when a transport broke.
	Reliable bool
}

// OutputQueuer is implemented by transports that can tell how many written
// bytes still wait in the operating system or driver (TIOCOUTQ on a tty).
// The link's pacer uses it to keep that queue near one frame.
type OutputQueuer interface {
	OutputQueued() (int, error)
}

// Penalizer is implemented by drivers that can hold off the source of a
// transport whose peer failed authentication (a TCP receptor refuses that
// address for a while), so a persistent offender costs little.
type Penalizer interface {
	Penalize(t io.ReadWriteCloser)
}
