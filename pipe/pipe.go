package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/sockmux/sockmux/link"
)

// Driver opens a pipe transport for a link. It implements link.Driver.
// Create one with NewPair or NewComm. Its methods are safe for concurrent
// use, but the link calls Open again only after closing the previous
// transport.
type Driver struct {
	log  *slog.Logger
	desc string
	sys  driverSys
}

var _ link.Driver = (*Driver)(nil)

// Properties reports LineRate 0 (a pipe is as fast as the two processes)
// and Reliable true.
//
// Reliable is right because nothing in a pipe, a FIFO or a Unix socket
// corrupts, drops, inserts or reorders bytes while both processes hold their
// ends: the kernel copies them in order. Bytes are lost only when a peer
// dies (what sat in the kernel buffer or in the peer's own buffers, perhaps
// half a frame), and that always ends the transport as seen by the peer that
// comes back, whose link starts with a handshake: this side sees EOF on IN or
// EPIPE on OUT, or, if the peer reopened its ends before this side noticed,
// the peer's handshake arriving on the same transport. Either way the link
// resends what was unacknowledged, so no timeout retransmission is needed
// within one open transport.
func (d *Driver) Properties() link.Properties {
	return link.Properties{LineRate: 0, Reliable: true}
}

// String names the transport for logs: "pipe in=PATH out=PATH" for a pair,
// "pipe comm=PATH" for a two-way channel.
func (d *Driver) String() string { return d.desc }

// Open opens the channel and blocks until the peer is there (see the
// package documentation) or ctx ends, in which case it returns ctx.Err()
// and leaves nothing open and no goroutine behind. The transport it returns
// reports the peer leaving as an error from Read (wrapping io.EOF) or Write,
// and its Close unblocks a pending Read or Write promptly.
func (d *Driver) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return d.open(ctx)
}

// Close releases what the driver keeps between transports: the listening
// socket of a NewComm Unix socket (whose socket file it removes) and its
// lock. It does not close a transport returned by Open, nor remove FIFOs.
// A pending Open returns an error; later calls to Open fail. Close is
// idempotent. Link code need not call it; a program should at shutdown.
func (d *Driver) Close() error { return d.closeSys() }

// ErrClosed is returned by Open after Close.
var ErrClosed = errors.New("pipe: driver closed")

func newLogger(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// Backoff bounds for the waits in Open.
const (
	minBackoff = 20 * time.Millisecond
	maxBackoff = 250 * time.Millisecond
)

// backoff is the delay between attempts while Open waits for the peer.
type backoff struct{ d time.Duration }

// next returns the next delay: 20 ms, doubling up to 250 ms.
func (b *backoff) next() time.Duration {
	switch {
	case b.d == 0:
		b.d = minBackoff
	case b.d < maxBackoff:
		b.d = min(2*b.d, maxBackoff)
	}
	return b.d
}

// transport joins a read side and a write side into the io.ReadWriteCloser
// handed to the link.
type transport struct {
	r       io.Reader
	w       io.Writer
	closers []io.Closer
	rname   string // what Read reads, for the error when the peer leaves
	pre     []byte // bytes read while Open probed for the peer
	onClose func() // run once by Close, may be nil

	once     sync.Once
	closeErr error
}

// Read reads from the read side. The end of it means the peer closed its
// end or exited: Read returns an error wrapping io.EOF.
func (t *transport) Read(p []byte) (int, error) {
	if len(t.pre) > 0 {
		n := copy(p, t.pre)
		t.pre = t.pre[n:]
		return n, nil
	}
	n, err := t.r.Read(p)
	if err == io.EOF {
		err = fmt.Errorf("pipe: peer closed %s: %w", t.rname, io.EOF)
	}
	return n, err
}

// Write writes to the write side.
func (t *transport) Write(p []byte) (int, error) { return t.w.Write(p) }

// Close closes both sides, unblocking a pending Read or Write.
func (t *transport) Close() error {
	t.once.Do(func() {
		if t.onClose != nil {
			t.onClose()
		}
		for _, c := range t.closers {
			if err := c.Close(); err != nil && t.closeErr == nil {
				t.closeErr = err
			}
		}
	})
	return t.closeErr
}
