package tcpdriver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmux/sockmux/link"
)

// Acceptor listens for many connectors at once (a hub's --listen): each
// connection that speaks first goes to a handler, which finds out whose
// it is and hands it to that peer's Feed. The connections accepted and not
// yet handed over are bounded (AcceptOptions.MaxPending) and timed out
// (AcceptOptions.HelloTimeout), so that a flood of connections that never
// authenticate cannot exhaust the process; a source that failed
// authentication is held off as a Receptor holds it off.
type Acceptor struct {
	opts    AcceptOptions
	ln      net.Listener
	pending chan struct{} // one token per connection in its handler
	pen     penalties

	busy      atomic.Uint64
	penalized atomic.Uint64
	closed    atomic.Bool
}

// AcceptOptions tune an Acceptor.
type AcceptOptions struct {
	// MaxPending bounds the connections accepted whose handler has not
	// returned; one more is closed at once. 0 means 256.
	MaxPending int
	// HelloTimeout is how long a connection may take to send its first
	// byte and its handler to finish reading (the read deadline the
	// handler gets). 0 means 10 s.
	HelloTimeout time.Duration
}

// AcceptStats are an Acceptor's counters.
type AcceptStats struct {
	Pending   int    // connections in their handler now
	Busy      uint64 // closed at once: MaxPending were pending
	Penalized uint64 // closed at once: their source failed authentication lately
}

// ListenMany binds addr at once, so that a port in use is reported before
// anything else starts.
func ListenMany(addr string, opts AcceptOptions) (*Acceptor, error) {
	if opts.MaxPending <= 0 {
		opts.MaxPending = 256
	}
	if opts.HelloTimeout <= 0 {
		opts.HelloTimeout = 10 * time.Second
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Acceptor{opts: opts, ln: ln, pending: make(chan struct{}, opts.MaxPending), pen: penalties{m: map[string]penalty{}}}, nil
}

// Addr is the address the acceptor listens on.
func (a *Acceptor) Addr() net.Addr { return a.ln.Addr() }

// Stats returns the acceptor's counters.
func (a *Acceptor) Stats() AcceptStats {
	return AcceptStats{Pending: len(a.pending), Busy: a.busy.Load(), Penalized: a.penalized.Load()}
}

// Serve accepts connections until Close, and runs handle for each that
// sends its first byte within HelloTimeout, in a goroutine of its own,
// with the connection's read deadline at the end of HelloTimeout. handle
// either hands the connection over (a Feed's Offer clears the deadline)
// or closes it.
func (a *Acceptor) Serve(handle func(c net.Conn)) error {
	for {
		c, err := a.ln.Accept()
		if err != nil {
			if a.closed.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(50 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		if a.pen.held(c.RemoteAddr()) {
			a.penalized.Add(1)
			c.Close()
			continue
		}
		select {
		case a.pending <- struct{}{}:
		default:
			a.busy.Add(1)
			c.Close()
			continue
		}
		go func() {
			defer func() { <-a.pending }()
			_ = c.SetReadDeadline(time.Now().Add(a.opts.HelloTimeout))
			var first [1]byte
			if _, err := io.ReadFull(c, first[:]); err != nil {
				c.Close()
				return
			}
			tuneTCP(c)
			handle(&prefixConn{Conn: c, prefix: first[:]})
		}()
	}
}

// Penalize holds off the source of t, which failed authentication (see
// Receptor.Penalize).
func (a *Acceptor) Penalize(t io.ReadWriteCloser) {
	if c, ok := t.(net.Conn); ok {
		a.pen.add(c.RemoteAddr())
	}
}

// Close stops listening; connections handed over stay with their feeds.
func (a *Acceptor) Close() error {
	a.closed.Store(true)
	return a.ln.Close()
}

// Feed is the driver of one peer of an Acceptor: its Open returns the
// connections Offer hands it, one at a time. It implements link.Driver
// and link.Penalizer.
type Feed struct {
	acc   *Acceptor
	name  string
	avail chan struct{} // a connection waits in waiting
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	waiting net.Conn    // offered, not yet taken
	timer   *time.Timer // closes waiting if not taken in time
	remote  string      // the remote address of the connection in use
}

// NewFeed makes the feed of the peer called name.
func (a *Acceptor) NewFeed(name string) *Feed {
	return &Feed{acc: a, name: name, avail: make(chan struct{}, 1), done: make(chan struct{})}
}

// ErrFeedClosed is Offer's and Open's error once the feed is closed.
var ErrFeedClosed = errors.New("tcpdriver: feed closed")

// Offer hands c (whose first bytes a handler may have read: give them
// back with Prefixed) to the link, which takes it when the connection it
// uses broke, and returns at once. One connection waits at a time: a newer
// one replaces it (the older is closed), and one not taken within wait is
// closed. On success the feed owns c and has cleared its deadline;
// otherwise the caller still owns it.
func (f *Feed) Offer(c net.Conn, wait time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.done:
		return ErrFeedClosed
	default:
	}
	_ = c.SetReadDeadline(time.Time{})
	if f.waiting != nil {
		f.timer.Stop()
		f.waiting.Close()
	}
	f.waiting = c
	f.timer = time.AfterFunc(wait, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.waiting == c {
			f.waiting = nil
			c.Close()
		}
	})
	select {
	case f.avail <- struct{}{}:
	default:
	}
	return nil
}

// Open waits for the next connection offered.
func (f *Feed) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	for {
		f.mu.Lock()
		if c := f.waiting; c != nil {
			f.waiting = nil
			f.timer.Stop()
			f.remote = c.RemoteAddr().String()
			f.mu.Unlock()
			return c, nil
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.done:
			return nil, ErrFeedClosed
		case <-f.avail:
		}
	}
}

// Remote is the address the peer's latest connection came from, "" if
// none came yet.
func (f *Feed) Remote() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.remote
}

// Penalize holds off the peer's name from the source of t, which failed
// authentication (link.Penalizer): the other peers behind the same
// address are not held off.
func (f *Feed) Penalize(t io.ReadWriteCloser) {
	if c, ok := t.(net.Conn); ok {
		f.acc.PenalizeName(c.RemoteAddr(), f.name)
	}
}

// Close ends the feed: Open and Offer fail from now on, and a connection
// waiting is closed. The connection in use is the link's to close.
func (f *Feed) Close() error {
	f.once.Do(func() { close(f.done) })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.waiting != nil {
		f.timer.Stop()
		f.waiting.Close()
		f.waiting = nil
	}
	return nil
}

// Properties reports TCP's properties.
func (f *Feed) Properties() link.Properties { return tcpProperties }

func (f *Feed) String() string {
	if r := f.Remote(); r != "" {
		return fmt.Sprintf("tcp hub %s peer %s from %s", f.acc.Addr(), f.name, r)
	}
	return fmt.Sprintf("tcp hub %s peer %s", f.acc.Addr(), f.name)
}

// Prefixed is c with the bytes already read from it given back first.
func Prefixed(c net.Conn, read []byte) net.Conn {
	if len(read) == 0 {
		return c
	}
	return &prefixConn{Conn: c, prefix: read}
}

// PenalizeName holds off connections from addr's host that give name
// (a hub checks HeldName once it read the name): a second, doubling with
// each further failure up to a minute. Peers of other names behind the
// same address are not held off.
func (a *Acceptor) PenalizeName(addr net.Addr, name string) {
	a.pen.addKey(hostOf(addr) + " " + strings.ToLower(name))
}

// HeldName reports whether connections from addr's host giving name are
// held off (PenalizeName), and counts one so refused.
func (a *Acceptor) HeldName(addr net.Addr, name string) bool {
	if a.pen.heldKey(hostOf(addr) + " " + strings.ToLower(name)) {
		a.penalized.Add(1)
		return true
	}
	return false
}

// penalties hold off sources that failed authentication (by host, or by
// host and peer name): their connections are refused for a second,
// doubling with each further failure up to a minute.
type penalties struct {
	mu sync.Mutex
	m  map[string]penalty // by remote IP
}

func (p *penalties) held(a net.Addr) bool { return p.heldKey(hostOf(a)) }

func (p *penalties) heldKey(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, ok := p.m[key]
	return ok && time.Now().Before(q.until)
}

func (p *penalties) add(a net.Addr) { p.addKey(hostOf(a)) }

func (p *penalties) addKey(host string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.m[host]
	if time.Since(q.until) > 10*time.Minute {
		q.last = 0
	}
	q.last = min(max(time.Second, 2*q.last), time.Minute)
	q.until = time.Now().Add(q.last)
	p.m[host] = q
	if len(p.m) > 4096 { // bounded: forget expired entries
		for h, e := range p.m {
			if time.Now().After(e.until) {
				delete(p.m, h)
			}
		}
	}
}
