package link

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// tcpProperties: TCP is fast and delivers what it accepted, in order.
var tcpProperties = Properties{Reliable: true}

// TCPConnector is the connector end of a TCP link: it dials Addr, and
// dials again each time the connection breaks.
type TCPConnector struct {
	Addr        string
	DialTimeout time.Duration // 0 means 10 s
}

// Open dials the receptor once.
func (d *TCPConnector) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	timeout := d.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	dialer := net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
	c, err := dialer.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, err
	}
	tuneTCP(c)
	return c, nil
}

// Properties reports TCP's properties.
func (d *TCPConnector) Properties() Properties { return tcpProperties }

func (d *TCPConnector) String() string { return "tcp connect " + d.Addr }

// TCPReceptor is the receptor end of a TCP link: it listens, and each Open
// returns the next connection that speaks first. A connection that comes
// while another is in use replaces it: the connector only dials again when
// its old connection is dead to it.
type TCPReceptor struct {
	ln    net.Listener
	conns chan net.Conn

	mu     sync.Mutex
	active net.Conn
	closed bool
}

// ListenTCP binds addr at once, so that a port in use is reported before
// anything else starts.
func ListenTCP(addr string) (*TCPReceptor, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &TCPReceptor{ln: ln, conns: make(chan net.Conn)}
	go r.acceptLoop()
	return r, nil
}

// Addr is the address the receptor listens on.
func (r *TCPReceptor) Addr() net.Addr { return r.ln.Addr() }

// firstByteTimeout is how long an accepted connection may stay silent
// before it is dropped: a sockmux connector speaks at once.
const firstByteTimeout = 5 * time.Second

func (r *TCPReceptor) acceptLoop() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			r.mu.Lock()
			closed := r.closed
			r.mu.Unlock()
			if closed {
				return
			}
			time.Sleep(50 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		go r.admit(c)
	}
}

// admit hands c to the link once it has sent its first byte.
func (r *TCPReceptor) admit(c net.Conn) {
	var first [1]byte
	_ = c.SetReadDeadline(time.Now().Add(firstByteTimeout))
	if _, err := io.ReadFull(c, first[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	tuneTCP(c)
	pc := &prefixConn{Conn: c, prefix: first[:]}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		c.Close()
		return
	}
	if r.active != nil {
		r.active.Close() // replaced: the link reopens and gets pc
	}
	r.mu.Unlock()
	select {
	case r.conns <- pc:
	case <-time.After(30 * time.Second):
		c.Close()
	}
}

// Open waits for the next connection.
func (r *TCPReceptor) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case c := <-r.conns:
		r.mu.Lock()
		r.active = c
		r.mu.Unlock()
		return c, nil
	}
}

// Close stops listening.
func (r *TCPReceptor) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.ln.Close()
}

// Properties reports TCP's properties.
func (r *TCPReceptor) Properties() Properties { return tcpProperties }

func (r *TCPReceptor) String() string { return fmt.Sprintf("tcp listen %s", r.ln.Addr()) }

// prefixConn gives back bytes already read from a connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func tuneTCP(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}
