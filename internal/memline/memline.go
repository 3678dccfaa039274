package memline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Cable is the in-memory cable.
type Cable struct {
	// Rate is the bytes per second each way; 0 = instant.
	Rate int
	// BER, Drop and Insert are the bit error rate, the probability a byte
	// is lost, and the probability a garbage byte is inserted after one.
	BER, Drop, Insert float64
	// HideQueue makes the ends' transports lack OutputQueued, as on a
	// pseudo-terminal, where TIOCOUTQ always reads 0.
	HideQueue bool
	// Tamper, if set, sees every chunk written by side (0 or 1) and
	// returns what the other side reads instead.
	Tamper func(side int, b []byte) []byte

	mu    sync.Mutex
	rng   *rand.Rand
	pair  *memPair
	taken [2]bool
	ready chan struct{} // closed when a new pair is laid
}

type memPair struct {
	c      *Cable
	q      [2]chan []byte // written by side i, not yet on the line (the OS queue)
	out    [2]chan []byte // carried to side 1-i, not yet read
	queued [2]atomic.Int64
	closed chan struct{}
	once   sync.Once
	pumps  sync.Once
	done   [2]chan struct{} // closed when side i's pump has flushed and ended
}

// pump carries side's writes over the line at the cable's rate. When the
// connection closes, what was written still arrives, as on a socket.
func (p *memPair) pump(side int) {
	defer close(p.done[side])
	defer p.flush(side)
	for {
		select {
		case chunk := <-p.q[side]:
			if rate := p.c.Rate; rate > 0 {
				t := time.NewTimer(time.Duration(len(chunk)) * time.Second / time.Duration(rate))
				select {
				case <-t.C:
				case <-p.closed:
					t.Stop()
					return
				}
			}
			p.queued[side].Add(-int64(len(chunk)))
			select {
			case p.out[side] <- chunk:
			case <-p.closed:
				return
			}
		case <-p.closed:
			return
		}
	}
}

// New lays a cable; its faults are drawn from seed.
func New(seed uint64) *Cable {
	c := &Cable{rng: rand.New(rand.NewPCG(seed, 1))}
	c.lay()
	return c
}

func (c *Cable) lay() {
	c.pair = &memPair{c: c, closed: make(chan struct{})}
	for i := range 2 {
		c.pair.done[i] = make(chan struct{})
		c.pair.q[i] = make(chan []byte, 64)
		c.pair.out[i] = make(chan []byte, 64)
	}
	c.taken = [2]bool{}
	if c.ready != nil {
		close(c.ready)
	}
	c.ready = make(chan struct{})
}

// Cut breaks the current connection; both ends' next Open gets a new one.
func (c *Cable) Cut() { c.breakPair(nil) }

// breakPair closes pair p (the current one when nil) and lays a new one.
func (c *Cable) breakPair(p *memPair) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p == nil {
		p = c.pair
	}
	p.once.Do(func() { close(p.closed) })
	if p == c.pair {
		c.lay()
	}
}

// End returns side 0 or 1 of the cable. With a Properties method added it
// is a link.Driver (memline does not import link, so link's own tests can
// use it).
func (c *Cable) End(side int) *End { return &End{c: c, side: side} }

// End is one end of a Cable.
type End struct {
	c    *Cable
	side int
}

// String names the end.
func (e *End) String() string { return fmt.Sprintf("memline end %d", e.side) }

// Open returns the end's side of the current connection, waiting for a
// new one after a cut.
func (e *End) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	for {
		e.c.mu.Lock()
		if !e.c.taken[e.side] {
			e.c.taken[e.side] = true
			p := e.c.pair
			e.c.mu.Unlock()
			p.pumps.Do(func() {
				go p.pump(0)
				go p.pump(1)
			})
			mc := &memConn{c: e.c, p: p, side: e.side, in: p.out[1-e.side]}
			if e.c.HideQueue {
				return plainConn{mc}, nil
			}
			return mc, nil
		}
		ready := e.c.ready
		e.c.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ready:
		}
	}
}

type memConn struct {
	c    *Cable
	p    *memPair
	side int
	in   chan []byte
	rest []byte
}

// OutputQueued reports the bytes written and not yet on the line, like
// TIOCOUTQ on a serial port.
func (m *memConn) OutputQueued() (int, error) { return int(m.p.queued[m.side].Load()), nil }

// flush hands what is still queued on side to the reader, at once.
func (p *memPair) flush(side int) {
	for {
		select {
		case chunk := <-p.q[side]:
			select {
			case p.out[side] <- chunk:
			default:
				return
			}
		default:
			return
		}
	}
}

// plainConn hides memConn's OutputQueued.
type plainConn struct{ io.ReadWriteCloser }

var errCut = errors.New("cable cut")

func (m *memConn) Read(b []byte) (int, error) {
	if len(m.rest) == 0 {
		// Bytes written before a close still arrive, as on a socket.
		select {
		case m.rest = <-m.in:
		default:
			select {
			case m.rest = <-m.in:
			case <-m.p.closed:
				<-m.p.done[1-m.side] // the other side's last bytes are flushed
				select {
				case m.rest = <-m.in:
				default:
					return 0, errCut
				}
			}
		}
	}
	n := copy(b, m.rest)
	m.rest = m.rest[n:]
	// What else has arrived comes with it, as from a tty's buffer: a
	// reader that fell behind catches up in one read.
	for n < len(b) && len(m.rest) == 0 {
		select {
		case m.rest = <-m.in:
			k := copy(b[n:], m.rest)
			m.rest = m.rest[k:]
			n += k
		default:
			return n, nil
		}
	}
	return n, nil
}

func (m *memConn) Write(b []byte) (int, error) {
	for off := 0; off < len(b); off += 64 {
		chunk := m.c.mangle(b[off:min(off+64, len(b))])
		if m.c.Tamper != nil {
			chunk = m.c.Tamper(m.side, chunk)
		}
		m.p.queued[m.side].Add(int64(len(chunk)))
		select {
		case m.p.q[m.side] <- chunk:
		case <-m.p.closed:
			return off, errCut
		}
	}
	return len(b), nil
}

func (m *memConn) Close() error {
	m.c.breakPair(m.p)
	return nil
}

// mangle copies b with the cable's faults applied.
func (c *Cable) mangle(b []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]byte, 0, len(b)+4)
	for _, x := range b {
		if c.Drop > 0 && c.rng.Float64() < c.Drop {
			continue
		}
		if c.BER > 0 {
			for bit := range 8 {
				if c.rng.Float64() < c.BER {
					x ^= 1 << bit
				}
			}
		}
		out = append(out, x)
		if c.Insert > 0 && c.rng.Float64() < c.Insert {
			out = append(out, byte(c.rng.UintN(256)))
		}
	}
	return out
}
