package link

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stuckTransport never delivers a byte and blocks every Write until it is
// closed: a peer that stopped reading, such as a stopped process at the
// other end of a full pipe, or a TCP peer gone without a reset once the
// socket buffer is full.
type stuckTransport struct {
	closed chan struct{}
	once   sync.Once
}

func (s *stuckTransport) Read([]byte) (int, error) {
	<-s.closed
	return 0, io.ErrClosedPipe
}

func (s *stuckTransport) Write([]byte) (int, error) {
	<-s.closed
	return 0, io.ErrClosedPipe
}

func (s *stuckTransport) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// stuckDriver hands out stuck transports and reports each one opened.
type stuckDriver struct{ opened chan *stuckTransport }

func (d *stuckDriver) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	t := &stuckTransport{closed: make(chan struct{})}
	select {
	case d.opened <- t:
		return t, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (d *stuckDriver) Properties() Properties { return Properties{Reliable: true} }
func (d *stuckDriver) String() string         { return "stuck" }

// TestDeadTimeoutWhileWriteBlocks: the dead timeout must end a transport
// even while the writer is blocked in a Write that never returns.
func TestDeadTimeoutWhileWriteBlocks(t *testing.T) {
	d := &stuckDriver{opened: make(chan *stuckTransport)}
	l := New(d, &byteUpper{}, Config{KeepAlive: 50 * time.Millisecond, DeadTimeout: 200 * time.Millisecond,
		Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() {
		cancel()
		assert.ErrorIs(t, <-done, ErrClosed)
	}()

	first := <-d.opened
	start := time.Now()
	select {
	case <-first.closed:
		took := time.Since(start)
		assert.GreaterOrEqual(t, took, 200*time.Millisecond, "not before the dead timeout")
		assert.Less(t, took, 2*time.Second)
	case <-time.After(3 * time.Second):
		first.Close() // so that the link can stop
		require.Fail(t, "a transport whose Write blocks was never given up")
	}
	select {
	case <-d.opened: // and the link opens the transport again
	case <-time.After(5 * time.Second):
		require.Fail(t, "the transport was not opened again")
	}
}

// On a line a damaged frame is a sign of life: it holds the dead timeout
// off, but for three dead timeouts after the last whole frame at most; on
// a reliable transport it counts for nothing.
func TestDeadAtCountsDamagedFrames(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, c := range []struct {
		reliable bool
		damaged  time.Duration // after the last whole frame; 0: none
		want     time.Duration
	}{
		{false, 0, 5 * time.Second},
		{false, 4 * time.Second, 9 * time.Second},
		{false, 14 * time.Second, 15 * time.Second},
		{true, 4 * time.Second, 5 * time.Second},
	} {
		l := &Link{cfg: Config{DeadTimeout: 5 * time.Second}, props: Properties{Reliable: c.reliable}}
		cn := &conn{l: l, lastRecv: t0}
		if c.damaged > 0 {
			cn.lastDamaged = t0.Add(c.damaged)
		}
		if got := cn.deadAt().Sub(t0); got != c.want {
			t.Errorf("%+v: dead %v after the last whole frame; want %v", c, got, c.want)
		}
	}
}
