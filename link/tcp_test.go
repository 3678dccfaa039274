package link

import (
	"context"
	"io"
	"net"
)

// The TCP driver lives in package tcpdriver, which imports link; link's own
// tests that need a real TCP connection use these two small drivers.

// testDialer dials addr on each Open.
type testDialer struct{ addr string }

func (d testDialer) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	var dl net.Dialer
	return dl.DialContext(ctx, "tcp", d.addr)
}
func (d testDialer) Properties() Properties { return Properties{Reliable: true} }
func (d testDialer) String() string         { return "test tcp connect " + d.addr }

// testListener accepts the next connection on each Open.
type testListener struct{ ln net.Listener }

func listenTest(addr string) (*testListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &testListener{ln: ln}, nil
}

func (l *testListener) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() { c, err := l.ln.Accept(); ch <- result{c, err} }()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}
func (l *testListener) Addr() net.Addr         { return l.ln.Addr() }
func (l *testListener) Close() error           { return l.ln.Close() }
func (l *testListener) Properties() Properties { return Properties{Reliable: true} }
func (l *testListener) String() string         { return "test tcp listen " + l.ln.Addr().String() }
