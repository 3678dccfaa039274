package tcpdriver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/sockmux/sockmux/link"
)

// tcpProperties: TCP is fast and delivers what it accepted, in order.
var tcpProperties = link.Properties{Reliable: true}

// Connector is the connector end of a TCP link: it dials Addr, and dials
// again each time the connection breaks. It implements link.Driver.
type Connector struct {
	Addr        string
	DialTimeout time.Duration // 0 means 10 s
}

// Open dials the receptor once.
func (d *Connector) Open(ctx context.Context) (io.ReadWriteCloser, error) {
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
func (d *Connector) Properties() link.Properties { return tcpProperties }

func (d *Connector) String() string { return "tcp connect " + d.Addr }

// Receptor is the receptor end of a TCP link: it listens, and each Open
// returns the next connection that speaks first. It implements
// link.Driver and link.Penalizer.
type Receptor struct {
	opts  ListenOptions
	ln    net.Listener
	conns chan net.Conn

	mu     sync.Mutex
	active net.Conn
	closed bool
	pen    penalties // by remote IP, after failed authentication
}

// penalty holds off a source that failed authentication.
type penalty struct {
	until time.Time
	last  time.Duration
}

// ListenOptions tune a Receptor.
type ListenOptions struct {
	// Replace lets a new connection replace the one in use at once (the
	// connector only dials again when its old connection is dead to it).
	// Without it the new one waits until the link gives the old one up.
	// Set it only when anyone who can connect is trusted: with
	// authentication off, say, but not when a stranger could kick the
	// peer off by connecting.
	Replace bool
}

// Listen binds addr at once, so that a port in use is reported before
// anything else starts.
func Listen(addr string, opts ListenOptions) (*Receptor, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &Receptor{opts: opts, ln: ln, conns: make(chan net.Conn), pen: penalties{m: map[string]penalty{}}}
	go r.acceptLoop()
	return r, nil
}

// Addr is the address the receptor listens on.
func (r *Receptor) Addr() net.Addr { return r.ln.Addr() }

// firstByteTimeout is how long an accepted connection may stay silent
// before it is dropped: a sockmux connector speaks at once.
const firstByteTimeout = 5 * time.Second

func (r *Receptor) acceptLoop() {
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
func (r *Receptor) admit(c net.Conn) {
	if r.penalized(c.RemoteAddr()) {
		c.Close()
		return
	}
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
	if r.active != nil && r.opts.Replace {
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
func (r *Receptor) Open(ctx context.Context) (io.ReadWriteCloser, error) {
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

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return a.String()
}

func (r *Receptor) penalized(a net.Addr) bool { return r.pen.held(a) }

// Penalize holds off the source of transport t, which failed
// authentication: its connections are refused for a second, doubling with
// each further failure up to a minute.
func (r *Receptor) Penalize(t io.ReadWriteCloser) {
	if c, ok := t.(net.Conn); ok {
		r.pen.add(c.RemoteAddr())
	}
}

// Close stops listening.
func (r *Receptor) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.ln.Close()
}

// Properties reports TCP's properties.
func (r *Receptor) Properties() link.Properties { return tcpProperties }

func (r *Receptor) String() string { return fmt.Sprintf("tcp listen %s", r.ln.Addr()) }

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
