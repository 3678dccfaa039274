package link

import (
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"time"
)

// Half duplex (Config.HalfDuplex): the two ends share one medium (an
// RS-485 two-wire bus, a radio modem) on which only one may transmit at a
// time, and each end may hear its own bytes. The discipline is listen
// before talk, with the turn going to the end that was just talked to:
//
//   - an end transmits only after the bus has been quiet for a gap: a short
//     one (turnGap) when the peer spoke last, so the answer comes at once; a
//     longer one (yieldGap, plus a random part up to yieldJit) when it spoke
//     last itself, so the peer has the turn first whenever it has anything
//     to say, and two ends that want an idle bus at once draw apart;
//   - a turn lasts while the end has something to send, at most a burst
//     (longBurst, or shortBurst while interactive data is about, so that a
//     keystroke from the far end waits little), then the end falls quiet;
//   - what an end hears of its own bytes, in order, however late, is its
//     echo and is dropped before the frame decoder sees it; anything else
//     heard while it transmits, and for echoGrace after its last byte left
//     the line, is a collision's garbage: dropped too, and a collision in
//     its turn ends the turn at once.
//
// A collision (both ends starting within the same gap, at start-up or when
// a pause in a turn looks like its end) garbles frames on both sides; the
// ARQ repairs them.
//
// The gaps allow for the time it takes an end to hear the other: a UART's
// FIFO or a USB adapter's packets, the OS, the reader (up to some 20 ms
// each way). turnGap must exceed the pauses inside a turn as the peer hears
// them; yieldGap must exceed turnGap plus the hearing time twice, or an end
// that yields would start again just as the peer's answer is on its way.
// Measured on the virtual half-duplex cable at 115200 baud (docs/serial.md).
const (
	turnGap    = 30 * time.Millisecond
	yieldGap   = 100 * time.Millisecond
	yieldJit   = 150 * time.Millisecond
	echoGrace  = 15 * time.Millisecond
	longBurst  = 600 * time.Millisecond
	shortBurst = 20 * time.Millisecond
)

// helloHalfDuplex is the hello flag of an end that runs half duplex: the
// other end should too (the link warns when it does not).
const helloHalfDuplex = 0x10

// bus keeps the turns of a half-duplex line. The writer asks it for the
// turn before each frame (take) and tells it when it has nothing to send
// (yield); the transport wrapper tells it what was written and heard.
type bus struct {
	rate int // the line's bytes per second

	mu        sync.Mutex
	heardAt   time.Time     // the last bytes from the peer arrived
	sendEnd   time.Time     // our last byte leaves the line
	peerLast  bool          // the peer spoke last (else we did, or nobody yet)
	turnStart time.Time     // our turn began; zero: not our turn
	lost      bool          // a collision in our turn: it ends at once
	askAt     time.Time     // the writer first asked for the bus since its last turn
	jitter    time.Duration // the random part of the wait for a bus we spoke on last
	rng       *rand.Rand
	heardCh   chan struct{} // signalled when the peer is heard: take looks again
	echo      []byte        // bytes written whose echo has not come back yet
	echoBuf   []byte
}

// maxEcho bounds the echo kept (a second at 921600 baud); maxEchoDelay is
// the longest an echo may take to come back (a USB adapter's latency timer
// and the OS on top).
const (
	maxEcho      = 96 << 10
	maxEchoDelay = 100 * time.Millisecond
)

func newBus(rate int) *bus {
	b := &bus{
		rate:    rate,
		rng:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		echoBuf: make([]byte, 0, 4096),
		heardCh: make(chan struct{}, 1),
	}
	b.echo = b.echoBuf
	b.jitter = b.draw()
	return b
}

func (b *bus) draw() time.Duration { return time.Duration(b.rng.Int64N(int64(yieldJit))) }

// wait returns how long the writer must wait before it may transmit; 0
// means it holds the turn now. interactive says interactive data is
// about, which shortens the turn.
func (b *bus) wait(now time.Time, interactive bool) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.turnStart.IsZero() {
		burst := longBurst
		if interactive {
			burst = shortBurst
		}
		if !b.lost && now.Sub(b.turnStart) < burst {
			return 0
		}
		b.endTurn()
	}
	quiet := later(b.sendEnd, b.heardAt)
	var at time.Time
	if b.peerLast {
		at = quiet.Add(turnGap) // the peer spoke and fell quiet: our answer
	} else {
		if b.askAt.IsZero() {
			b.askAt = now
		}
		at = later(quiet.Add(yieldGap), b.askAt).Add(b.jitter)
	}
	if d := at.Sub(now); d > 0 {
		return d
	}
	b.turnStart = now
	b.askAt = time.Time{}
	return 0
}

// yield ends our turn: the writer has nothing to send.
func (b *bus) yield() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.turnStart.IsZero() {
		b.endTurn()
	}
}

func (b *bus) endTurn() {
	b.lost = false
	b.turnStart = time.Time{}
	b.peerLast = false
	b.jitter = b.draw()
}

// wrote records p, handed to the line at now: its echo may come back.
func (b *bus) wrote(p []byte, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sendEnd = later(b.sendEnd, now).Add(lineTime(len(p), b.rate))
	b.peerLast = false
	if len(b.echo)+len(p) > maxEcho {
		b.echo = b.echo[:0] // far more than any line echoes: never heard
	}
	b.echo = append(b.echo, p...)
}

// heard filters bytes p read at now: it drops our own echo (the bytes we
// wrote, in order, as they come back) and, while we transmit and for
// echoGrace after, whatever else arrives (a collision's garbage), and
// returns the peer's bytes, moved to the front of p.
func (b *bus) heard(p []byte, now time.Time) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	inTurn := !b.turnStart.IsZero()
	ours := inTurn || now.Before(b.sendEnd.Add(echoGrace))
	if !ours && now.After(b.sendEnd.Add(maxEchoDelay)) {
		b.echo = b.echo[:0] // an echo this late never comes: a bus that does not echo
	}
	keep := p[:0]
	for i, c := range p {
		switch {
		case len(b.echo) > 0 && c == b.echo[0]:
			b.echo = b.echo[1:]
		case ours:
			if len(b.echo) > 0 {
				b.echo = b.echo[1:] // our byte, garbled
			}
			if inTurn {
				b.lost = true // stop: the bus is not ours alone
			}
		default:
			// The peer's: what is left of our echo will not come.
			b.echo = b.echo[:0]
			keep = append(keep, p[i:]...)
			b.heardAt = now
			b.peerLast = true
			select {
			case b.heardCh <- struct{}{}:
			default:
			}
			return keep
		}
	}
	if len(b.echo) == 0 {
		b.echo = b.echoBuf[:0]
	}
	return keep
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// take waits until the writer holds the turn, or ctx ends or the
// transport breaks.
func (b *bus) take(ctx context.Context, broken <-chan struct{}, interactive bool) error {
	for {
		d := b.wait(time.Now(), interactive)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-broken:
			t.Stop()
			return errBroken
		case <-b.heardCh:
			t.Stop() // the peer spoke: the gap to wait is another now
		case <-t.C:
		}
	}
}

// busTransport is a transport on a half-duplex line: it tells the bus
// what goes out and drops what comes back of it.
type busTransport struct {
	io.ReadWriteCloser
	b *bus
}

func (t *busTransport) Write(p []byte) (int, error) {
	n, err := t.ReadWriteCloser.Write(p)
	t.b.wrote(p[:n], time.Now())
	return n, err
}

func (t *busTransport) Read(p []byte) (int, error) {
	for {
		n, err := t.ReadWriteCloser.Read(p)
		if n > 0 {
			n = len(t.b.heard(p[:n], time.Now()))
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}
