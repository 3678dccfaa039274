package link

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"
)

// memCable is an in-memory null-modem cable for tests: two ends, each a
// Driver, with byte faults injected on the way and cuts on demand. Every
// channel it uses belongs to the test, so it runs inside testing/synctest.
type memCable struct {
	props Properties
	rate  int // bytes per second each way; 0 = instant
	mu    sync.Mutex
	rng   *rand.Rand
	ber   float64 // bit error rate
	drop  float64 // probability a byte is lost
	ins   float64 // probability a garbage byte is inserted
	pair  *memPair
	taken [2]bool
	ready chan struct{} // closed when a new pair is laid
	flips int
	// tamper, if set, sees every chunk written by side (0 or 1) and
	// returns what the other side reads instead.
	tamper func(side int, b []byte) []byte
}

type memPair struct {
	ab, ba chan []byte
	closed chan struct{}
	once   sync.Once
}

func newMemCable(props Properties, seed uint64) *memCable {
	c := &memCable{props: props, rng: rand.New(rand.NewPCG(seed, 1))}
	c.lay()
	return c
}

func (c *memCable) lay() {
	c.pair = &memPair{ab: make(chan []byte, 64), ba: make(chan []byte, 64), closed: make(chan struct{})}
	c.taken = [2]bool{}
	if c.ready != nil {
		close(c.ready)
	}
	c.ready = make(chan struct{})
}

// cut breaks the current connection; both ends' next Open gets a new one.
func (c *memCable) cut() { c.breakPair(nil) }

// breakPair closes pair p (the current one when nil) and lays a new one.
func (c *memCable) breakPair(p *memPair) {
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

func (c *memCable) end(side int) Driver { return &memEnd{c: c, side: side} }

type memEnd struct {
	c    *memCable
	side int
}

func (e *memEnd) Properties() Properties { return e.c.props }
func (e *memEnd) String() string         { return "mem" }

func (e *memEnd) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	for {
		e.c.mu.Lock()
		if !e.c.taken[e.side] {
			e.c.taken[e.side] = true
			p := e.c.pair
			e.c.mu.Unlock()
			in, out := p.ab, p.ba
			if e.side == 0 {
				in, out = p.ba, p.ab
			}
			return &memConn{c: e.c, p: p, side: e.side, in: in, out: out}, nil
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
	c       *memCable
	p       *memPair
	side    int
	in, out chan []byte
	rest    []byte
}

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
	return n, nil
}

func (m *memConn) Write(b []byte) (int, error) {
	for off := 0; off < len(b); off += 64 {
		chunk := m.c.mangle(b[off:min(off+64, len(b))])
		if m.c.tamper != nil {
			chunk = m.c.tamper(m.side, chunk)
		}
		if m.c.rate > 0 {
			time.Sleep(lineTime(min(64, len(b)-off), m.c.rate))
		}
		select {
		case m.out <- chunk:
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
func (c *memCable) mangle(b []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]byte, 0, len(b)+4)
	for _, x := range b {
		if c.drop > 0 && c.rng.Float64() < c.drop {
			continue
		}
		if c.ber > 0 {
			for bit := range 8 {
				if c.rng.Float64() < c.ber {
					x ^= 1 << bit
					c.flips++
				}
			}
		}
		out = append(out, x)
		if c.ins > 0 && c.rng.Float64() < c.ins {
			out = append(out, byte(c.rng.UintN(256)))
		}
	}
	return out
}
