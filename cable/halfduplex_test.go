//go:build linux

package cable

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHalfDuplexOneWay: on a half-duplex bus with one end talking, the
// other end receives every byte intact at the line rate, and the talker
// hears its own bytes as they were on the bus.
func TestHalfDuplexOneWay(t *testing.T) {
	const baud, rate = 115200, 11520
	c := startCable(t, Config{Baud: baud, HalfDuplex: true})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	data := randomBytes(5, rate) // a second of line time
	start := time.Now()
	done := writeAsync(t, a, data)
	echo := make(chan []byte, 1)
	go func() { echo <- readUntilIdle(t, a, len(data), time.Second) }()
	got := readUntilIdle(t, b, len(data), time.Second)
	elapsed := time.Since(start)
	require.NoError(t, <-done)
	assert.True(t, bytes.Equal(data, got), "the listener receives the talker's bytes intact (%d of %d)", len(got), len(data))
	assert.True(t, bytes.Equal(data, <-echo), "the talker hears its own bytes")
	assert.Zero(t, c.Collisions())
	st := c.Stats()
	assert.EqualValues(t, len(data), st.AtoB.Echoed)
	assert.Zero(t, st.AtoB.Collided)
	// A second of line time, plus the collision guard and a scheduler's
	// slack: the bus runs at the line rate.
	assert.InDelta(t, 1.0, elapsed.Seconds(), 0.15, "one second of line time took %v", elapsed)
}

// TestHalfDuplexCollision: bytes both ends send at the same time arrive
// garbled at both ends, and the talkers hear the garbage too.
func TestHalfDuplexCollision(t *testing.T) {
	const baud, rate = 115200, 11520
	c := startCable(t, Config{Baud: baud, HalfDuplex: true})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	fromA, fromB := randomBytes(6, rate/2), randomBytes(7, rate/2)
	doneA, doneB := writeAsync(t, a, fromA), writeAsync(t, b, fromB)
	// Each end reads what it hears: the other's bytes and its own echo.
	heardA := make(chan []byte, 1)
	go func() { heardA <- readUntilIdle(t, a, 2*len(fromA), time.Second) }()
	heardB := readUntilIdle(t, b, 2*len(fromB), time.Second)
	require.NoError(t, <-doneA)
	require.NoError(t, <-doneB)
	gotA := <-heardA
	assert.Greater(t, c.Collisions(), int64(0))
	st := c.Stats()
	assert.Greater(t, st.AtoB.Collided, int64(len(fromA)/2), "most of A's bytes collided")
	assert.Greater(t, st.BtoA.Collided, int64(len(fromB)/2), "most of B's bytes collided")
	assert.False(t, bytes.Contains(heardB, fromA[:256]), "B does not hear A's bytes intact")
	assert.False(t, bytes.Contains(gotA, fromB[:256]), "A does not hear B's bytes intact")
	assert.False(t, bytes.Contains(gotA, fromA[:256]), "A's own echo is garbled as well")
	assert.Contains(t, st.String(), "collided")
}

// TestHalfDuplexTurns: ends that take turns are heard intact both ways.
func TestHalfDuplexTurns(t *testing.T) {
	const baud = 115200
	c := startCable(t, Config{Baud: baud, HalfDuplex: true})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	for turn := range 4 {
		talker, listener := a, b
		if turn%2 == 1 {
			talker, listener = b, a
		}
		msg := randomBytes(uint64(10+turn), 2000)
		require.NoError(t, <-writeAsync(t, talker, msg))
		got := readUntilIdle(t, listener, len(msg), time.Second)
		assert.True(t, bytes.Equal(msg, got), "turn %d arrives intact", turn)
		assert.True(t, bytes.Equal(msg, readUntilIdle(t, talker, len(msg), time.Second)), "turn %d: the talker hears itself", turn)
		time.Sleep(20 * time.Millisecond) // the bus falls quiet before the next turn
	}
	assert.Zero(t, c.Collisions())
}
