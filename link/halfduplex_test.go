package link

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

const busRate = 11520 // 115200 baud

// TestBusAnswersAfterTheTurnGap: an end that heard the peer last answers
// after turnGap of quiet, not before, and holds the turn for a burst.
func TestBusAnswersAfterTheTurnGap(t *testing.T) {
	b := newBus(busRate)
	t0 := time.Now()
	assert.Equal(t, []byte("hi"), b.heard([]byte("hi"), t0), "the peer's bytes pass")
	assert.Equal(t, turnGap, b.wait(t0, false), "quiet for turnGap first")
	assert.Equal(t, turnGap/2, b.wait(t0.Add(turnGap/2), false))
	assert.Zero(t, b.wait(t0.Add(turnGap), false), "then the turn is ours")
	assert.Zero(t, b.wait(t0.Add(turnGap+longBurst/2), false), "for a burst")
	assert.Positive(t, b.wait(t0.Add(turnGap+longBurst), false), "and then it is the peer's")
}

// TestBusYieldsToThePeer: an end that spoke last waits yieldGap and its
// random part, so the peer answers first.
func TestBusYieldsToThePeer(t *testing.T) {
	b := newBus(busRate)
	t0 := time.Now()
	b.heard([]byte{9}, t0.Add(-turnGap))
	assert.Zero(t, b.wait(t0, false))
	b.wrote(make([]byte, 115), t0) // 10 ms of line time
	b.yield()
	end := t0.Add(10 * time.Millisecond)
	d := b.wait(end, false)
	assert.GreaterOrEqual(t, d, yieldGap, "the peer has the first chance")
	assert.Less(t, d, yieldGap+yieldJit)
	// The peer answers inside the gap: now it is the peer that spoke.
	assert.Len(t, b.heard([]byte("ack"), end.Add(40*time.Millisecond)), 3)
	assert.Equal(t, turnGap, b.wait(end.Add(40*time.Millisecond), false))
}

// TestBusShortTurnsWhileInteractive: interactive data shortens the turn.
func TestBusShortTurnsWhileInteractive(t *testing.T) {
	b := newBus(busRate)
	t0 := time.Now()
	b.heard([]byte{1}, t0)
	at := t0.Add(turnGap)
	assert.Zero(t, b.wait(at, true))
	assert.Zero(t, b.wait(at.Add(shortBurst/2), true))
	assert.Positive(t, b.wait(at.Add(shortBurst), true), "a short turn")
}

// TestBusDropsItsEcho: what we wrote comes back and is dropped, however
// late; what the peer says after it passes.
func TestBusDropsItsEcho(t *testing.T) {
	b := newBus(busRate)
	t0 := time.Now()
	b.heard([]byte{9}, t0)
	b.wait(t0.Add(turnGap), false)
	sent := []byte("frame-one\x00frame-two\x00")
	b.wrote(sent, t0.Add(turnGap))
	b.yield()
	late := t0.Add(turnGap + 30*time.Millisecond) // past echoGrace: matched, not timed
	assert.Empty(t, b.heard(append([]byte(nil), sent[:7]...), late))
	got := b.heard(append(append([]byte(nil), sent[7:]...), "peer"...), late)
	assert.Equal(t, []byte("peer"), got, "the echo's rest dropped, the peer's bytes kept")
}

// TestBusGarbageInOurTurnLosesIt: bytes that are not our echo during our
// turn are a collision (or the peer took the bus): dropped, and the turn
// ends at once.
func TestBusGarbageInOurTurnLosesIt(t *testing.T) {
	b := newBus(busRate)
	t0 := time.Now()
	b.heard([]byte{9}, t0)
	start := t0.Add(turnGap)
	assert.Zero(t, b.wait(start, false))
	b.wrote([]byte("abcdef"), start)
	assert.Empty(t, b.heard([]byte("abXdef"), start.Add(time.Millisecond)), "a garbled echo is dropped")
	assert.Positive(t, b.wait(start.Add(2*time.Millisecond), false), "the turn is lost")
}

// TestBusEchoThatNeverComes: on a bus that does not echo, what we wrote
// is forgotten after maxEchoDelay, so the peer's bytes are not taken for it.
func TestBusEchoThatNeverComes(t *testing.T) {
	b := newBus(busRate)
	t0 := time.Now()
	b.wrote([]byte("xyz"), t0)
	b.yield()
	got := b.heard([]byte("xyz!"), t0.Add(maxEchoDelay+10*time.Millisecond))
	assert.True(t, bytes.Equal([]byte("xyz!"), got), "%q", got)
}

// TestBusDrawsApartAtStart: two ends that want an idle bus at the same
// moment wait random times, mostly different by more than it takes to
// hear the other.
func TestBusDrawsApartAtStart(t *testing.T) {
	t0 := time.Now()
	apart := 0
	for range 200 {
		a, b := newBus(busRate), newBus(busRate)
		if d := a.wait(t0, false) - b.wait(t0, false); d > 20*time.Millisecond || d < -20*time.Millisecond {
			apart++
		}
	}
	assert.Greater(t, apart, 100, "of 200 starts, %d drew apart", apart)
}
