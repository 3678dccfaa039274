//go:build unix

package tests

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sockmux/sockmux/internal/testutil"
)

// relayLoopback listens on loopback and, for each connection a, dials the
// far side with dial and hands both to carry, in the connection's own
// goroutine; a connection whose far side cannot be reached is closed. The
// listener is closed when the test ends.
func relayLoopback(t *testing.T, dial func() (net.Conn, error), carry func(a, b net.Conn)) net.Listener {
	t.Helper()
	return testutil.ServeLoopback(t, func(a net.Conn) {
		b, err := dial()
		if err != nil {
			a.Close()
			return
		}
		carry(a, b)
	})
}

// dialTCP dials to.
func dialTCP(to string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.Dial("tcp", to) }
}

// relay is a TCP relay between the two link ends, like a network path: it
// carries at most rate bytes per second each way (0: as fast as it can),
// and can cut every connection through it, as a flaky network would.
type relay struct {
	ln    net.Listener
	rate  int
	mu    sync.Mutex
	conns []net.Conn
}

func newRelay(t *testing.T, to string, rate int) *relay {
	t.Helper()
	r := &relay{rate: rate}
	r.ln = relayLoopback(t, dialTCP(to), func(a, b net.Conn) {
		r.mu.Lock()
		r.conns = append(r.conns, a, b)
		r.mu.Unlock()
		go r.pipe(a, b)
		r.pipe(b, a)
	})
	t.Cleanup(func() { r.ln.Close(); r.cut() })
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

// pipe copies src to dst no faster than the rate, then closes both.
func (r *relay) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	if r.rate == 0 {
		_, _ = io.Copy(dst, src)
		return
	}
	buf := make([]byte, 16<<10)
	begin, sent := time.Now(), 0
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			sent += n
			if ahead := time.Duration(sent)*time.Second/time.Duration(r.rate) - time.Since(begin); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		if err != nil {
			return
		}
	}
}

// cut breaks every connection through the relay at once, both directions.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	r.conns = nil
}
