package cable

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Half duplex: a two-wire bus (RS-485, some radio modems) instead of two
// wires, one each way. Both ends transmit on the one medium, so bytes that
// two ends send at the same time collide and arrive garbled at both, and
// each end hears its own bytes as the other does (a transceiver whose
// receiver stays on while it transmits).
//
// The model: a chunk the pump carries was on the air for the time the line
// takes for it, ending when the pump took it. Before it is delivered, the
// pump waits a guard time in which the other direction's overlapping chunk,
// if any, has been taken too; then both chunks are garbled, whichever was
// first.

// collisionGuard is how long a chunk waits before delivery, for the other
// direction to register a chunk that overlaps it: a burst's worth of line
// time, as a pump takes at most a burst at once, and a little slack for a
// late wake-up.
const collisionGuard = burstTime + 2*time.Millisecond

// busKeep is how long the bus remembers a chunk's air time.
const busKeep = 200 * time.Millisecond

// airTime is the time a chunk was on the medium.
type airTime struct{ from, to time.Time }

func (a airTime) overlaps(b airTime) bool { return a.from.Before(b.to) && b.from.Before(a.to) }

// bus is the shared medium of a half-duplex cable: the recent air times of
// each direction's chunks.
type bus struct {
	mu         sync.Mutex
	air        [2][]airTime // by direction: 0 is A→B, 1 is B→A
	collisions atomic.Int64
}

// transmit records that direction dir had a on the air.
func (b *bus) transmit(dir int, a airTime) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := b.air[dir][:0]
	for _, x := range b.air[dir] {
		if a.to.Sub(x.to) < busKeep {
			keep = append(keep, x)
		}
	}
	b.air[dir] = append(keep, a)
}

// collided reports whether the other direction was on the air during a.
func (b *bus) collided(dir int, a airTime) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, x := range b.air[1-dir] {
		if x.overlaps(a) {
			return true
		}
	}
	return false
}

// halfDuplex is one direction's side of the bus: it decides what becomes
// of a chunk the pump carried.
type halfDuplex struct {
	bus *bus
	dir int
	rng *rand.Rand
	// echoed counts the bytes the sending end heard of its own; collided
	// the bytes of this direction garbled by a collision.
	echoed, collided *atomic.Int64
}

// carry puts out on the air, having ended now after airFor, waits out the
// guard and returns what both ends receive: out itself, or garbage of its
// length when the other end transmitted at the same time.
func (h *halfDuplex) carry(out []byte, now time.Time, airFor time.Duration) []byte {
	a := airTime{from: now.Add(-airFor), to: now}
	h.bus.transmit(h.dir, a)
	time.Sleep(collisionGuard)
	if h.bus.collided(h.dir, a) {
		for i := range out {
			out[i] = byte(h.rng.Uint32())
		}
		h.bus.collisions.Add(1)
		h.collided.Add(int64(len(out)))
	}
	return out
}

// halfDuplexOf returns d's side of the bus, or nil on a cable with a wire
// each way.
func (c *Cable) halfDuplexOf(d *direction) *halfDuplex {
	if c.bus == nil {
		return nil
	}
	dir := 0
	if d == c.dirs[1] {
		dir = 1
	}
	return &halfDuplex{
		bus:      c.bus,
		dir:      dir,
		rng:      rand.New(rand.NewPCG(c.seed, uint64(100+dir))),
		echoed:   &d.echoed,
		collided: &d.collided,
	}
}

// Collisions counts the chunks, in either direction, that a collision on
// a half-duplex cable garbled (0 on a cable with a wire each way).
func (c *Cable) Collisions() int64 {
	if c.bus == nil {
		return 0
	}
	return c.bus.collisions.Load()
}
