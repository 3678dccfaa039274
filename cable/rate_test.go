//go:build linux

package cable

import (
	"bytes"
	"context"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMisframe(t *testing.T) {
	data := randomBytes(9, 2000)
	assert.Equal(t, data, misframe(bytes.Clone(data), 115200, 115200), "same rate")
	// A UART tolerates a few percent: the receiver resynchronises on
	// each start bit.
	for _, rx := range []int{112900, 117500, 111000, 119000} {
		assert.Equal(t, data, misframe(bytes.Clone(data), 115200, rx), "115200 sent, %d received", rx)
	}
	// Far off: garbage, and fewer bytes at a slower receiver, more at a
	// faster one, as a real line gives.
	slow := misframe(bytes.Clone(data), 115200, 9600)
	fast := misframe(bytes.Clone(data), 9600, 115200)
	assert.NotEqual(t, data, slow)
	assert.Less(t, len(slow), len(data)/5, "a 9600 receiver sees about one frame in twelve")
	assert.NotEqual(t, data, fast)
	assert.Greater(t, len(fast), len(data), "a 115200 receiver sees each 9600 bit as a frame of its own")
	assert.Equal(t, slow, misframe(bytes.Clone(data), 115200, 9600), "deterministic")
	// 8% off is beyond what a UART takes.
	assert.NotEqual(t, data, misframe(bytes.Clone(data), 115200, 106000))

	// A 0x00 at a quarter of the rate: the receiver sees a long low, a
	// break, then idle.
	assert.Equal(t, []byte{0x00}, misframe([]byte{0x00}, 9600, 38400)[:1])
	assert.Empty(t, misframe(nil, 9600, 115200))
}

func TestCableFollowsTheEndsRates(t *testing.T) {
	var logs testutil.LogBuffer
	c := startCable(t, Config{Baud: 115200, FaultsBA: &Faults{}, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	for _, f := range []*os.File{a, b} {
		speed, err := endSpeed(f)
		require.NoError(t, err)
		assert.Equal(t, 115200, speed, "both ends start at --baud")
	}

	// Same rates: carried as before.
	data := randomBytes(5, 500)
	_, err := a.Write(data)
	require.NoError(t, err)
	assert.Equal(t, data, readUntilIdle(t, b, len(data), time.Second))
	assert.Zero(t, c.Stats().AtoB.Misframed)

	// B listens at 9600: what A sends at 115200 arrives garbled.
	require.NoError(t, setEndSpeed(b, 9600))
	_, err = a.Write(data)
	require.NoError(t, err)
	got := readUntilIdle(t, b, len(data), 500*time.Millisecond)
	assert.NotEqual(t, data, got)
	assert.Less(t, len(got), len(data)/5)
	assert.EqualValues(t, len(data), c.Stats().AtoB.Misframed)
	assert.Contains(t, logs.String(), "cable A→B: A sends at 115200 baud, B listens at 9600: bytes arrive garbled")

	// Both at 9600: intact again, and paced at 960 bytes/s.
	require.NoError(t, setEndSpeed(a, 9600))
	start := time.Now()
	_, err = a.Write(data)
	require.NoError(t, err)
	assert.Equal(t, data, readUntilIdle(t, b, len(data), 2*time.Second))
	took := time.Since(start)
	t.Logf("500 bytes at 9600 baud took %v", took)
	assert.InDelta(t, 500.0/960, took.Seconds(), 0.25, "paced at the rate the ends set (115200 would take 0.04 s)")
	assert.Contains(t, logs.String(), "cable: A set 9600 baud")
	assert.Contains(t, logs.String(), "cable A→B: rates match again (9600 baud)")
	assert.Contains(t, c.Stats().String(), "500 bytes sent at a rate the other end does not listen at")
}

func TestCableFixedRateIgnoresTheEnds(t *testing.T) {
	c := startCable(t, Config{Baud: 115200, FixedRate: true})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	require.NoError(t, setEndSpeed(b, 9600))
	data := randomBytes(6, 500)
	_, err := a.Write(data)
	require.NoError(t, err)
	assert.Equal(t, data, readUntilIdle(t, b, len(data), time.Second))
	assert.Zero(t, c.Stats().AtoB.Misframed)
}

func TestLatencyTimerBatches(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newLatencyTimer(16*time.Millisecond, t0)
	assert.Nil(t, l.add([]byte("x"), t0.Add(3*time.Millisecond)), "a lone byte is held")
	assert.Equal(t, t0.Add(16*time.Millisecond), l.deadline(), "until the timer expires")
	assert.Nil(t, l.expire(t0.Add(15*time.Millisecond)))
	assert.Equal(t, []byte("x"), l.expire(t0.Add(16*time.Millisecond)))
	assert.True(t, l.deadline().IsZero(), "nothing held")

	// The timer runs on while idle: a byte 40 ms later waits for the
	// next expiry (16 + 16k ms after the last batch), not a full period.
	assert.Nil(t, l.add([]byte("y"), t0.Add(56*time.Millisecond)))
	assert.Equal(t, t0.Add(64*time.Millisecond), l.deadline())

	// A full packet goes at once, the rest is held, the timer restarts.
	big := bytes.Repeat([]byte("z"), 2*USBPacket+10)
	out := l.add(big, t0.Add(60*time.Millisecond))
	assert.Len(t, out, 2*USBPacket)
	assert.Equal(t, t0.Add(76*time.Millisecond), l.deadline())
	assert.Len(t, l.expire(t0.Add(76*time.Millisecond)), 11, "y and the 10 left over")
}

func TestCableLatency(t *testing.T) {
	echo := func(cfg Config) (mean, worst time.Duration) {
		c := startCable(t, cfg)
		a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
		const n = 20
		var sum time.Duration
		buf := make([]byte, 16)
		for i := range n {
			time.Sleep(time.Duration(3+i%7) * time.Millisecond)
			start := time.Now()
			_, err := a.Write([]byte{byte(i)})
			require.NoError(t, err)
			require.NoError(t, b.SetReadDeadline(time.Now().Add(time.Second)))
			k, err := b.Read(buf)
			require.NoError(t, err)
			require.Equal(t, []byte{byte(i)}, buf[:k])
			d := time.Since(start)
			sum += d
			worst = max(worst, d)
		}
		return sum / n, worst
	}
	plainMean, plainWorst := echo(Config{Baud: 115200})
	latMean, latWorst := echo(Config{Baud: 115200, Latency: 16 * time.Millisecond})
	t.Logf("one byte across: without latency mean %v max %v; with 16 ms mean %v max %v", plainMean, plainWorst, latMean, latWorst)
	assert.Greater(t, latMean, 4*time.Millisecond, "bytes wait for the timer")
	assert.Greater(t, latMean, plainMean+3*time.Millisecond)
	assert.Less(t, latWorst, 16*time.Millisecond+40*time.Millisecond, "at most a timer period, and the test machine's slack")

	// Bulk through the timer arrives intact, at the line rate.
	c := startCable(t, Config{Baud: 115200, Latency: 16 * time.Millisecond})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	data := randomBytes(7, 11520)
	start := time.Now()
	done := writeAsync(t, a, data)
	got := readUntilIdle(t, b, len(data), time.Second)
	require.NoError(t, <-done)
	assert.Equal(t, data, got)
	assert.InDelta(t, 1.0, time.Since(start).Seconds(), 0.25, "a second of line time")

	_, err := Start(t.Context(), Config{PathA: "/tmp/x", PathB: "/tmp/y", Latency: -time.Millisecond})
	assert.ErrorContains(t, err, "cable: latency -1ms must be between 0 and 1s")
}

// TestCableMaxBaud: a cable that carries up to MaxBaud garbles what an end
// sends faster, and carries what it sends at MaxBaud or below.
func TestCableMaxBaud(t *testing.T) {
	var logs testutil.LogBuffer
	c := startCable(t, Config{Baud: 115200, MaxBaud: 230400, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	data := randomBytes(6, 2000)
	for _, baud := range []int{230400, 460800} {
		require.NoError(t, setEndSpeed(a, baud))
		require.NoError(t, setEndSpeed(b, baud))
		_, err := a.Write(data)
		require.NoError(t, err)
		got := readUntilIdle(t, b, len(data), time.Second)
		if baud <= 230400 {
			assert.Equal(t, data, got, "%d baud: carried", baud)
			assert.Zero(t, c.Stats().AtoB.Overspeed)
		} else {
			assert.Len(t, got, len(data))
			assert.NotEqual(t, data, got, "%d baud: garbled", baud)
			assert.EqualValues(t, len(data), c.Stats().AtoB.Overspeed)
		}
	}
	assert.Contains(t, logs.String(), "A sends at 460800 baud, faster than the cable carries (230400)")
	assert.Contains(t, c.Stats().String(), "2000 bytes sent faster than the cable carries")
}

// TestCableMarginal: above MarginalBaud the cable carries bytes with bit
// errors; at or below it, intact; above MaxBaud, garbage as before.
func TestCableMarginal(t *testing.T) {
	var logs testutil.LogBuffer
	c := startCable(t, Config{Baud: 115200, MaxBaud: 921600, MarginalBaud: 230400, MarginalBER: 1e-2, Seed: 5, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	data := randomBytes(7, 4000)
	for _, baud := range []int{230400, 460800} {
		require.NoError(t, setEndSpeed(a, baud))
		require.NoError(t, setEndSpeed(b, baud))
		_, err := a.Write(data)
		require.NoError(t, err)
		got := readUntilIdle(t, b, len(data), time.Second)
		require.Len(t, got, len(data))
		diff := 0
		for i := range got {
			diff += bits.OnesCount8(got[i] ^ data[i])
		}
		if baud <= 230400 {
			assert.Zero(t, diff, "%d baud: intact", baud)
		} else {
			assert.InDelta(t, 320, diff, 120, "%d baud: about 1e-2 of 32000 bits flipped", baud)
			assert.EqualValues(t, len(data), c.Stats().AtoB.Marginal)
			assert.EqualValues(t, diff, c.Stats().AtoB.BitsFlipped)
		}
	}
	assert.Contains(t, logs.String(), "A sends at 460800 baud, above 230400: bytes arrive with bit errors at 0.01")
	assert.Contains(t, c.Stats().String(), "4000 bytes sent at a rate the cable carries badly")
	for _, cfg := range []Config{
		{Baud: 115200, MarginalBaud: 230400},
		{Baud: 115200, MarginalBER: 1e-3},
		{Baud: 115200, MarginalBaud: 921600, MarginalBER: 1e-3, MaxBaud: 460800},
		{Baud: 115200, MarginalBaud: 230400, MarginalBER: 2},
	} {
		cfg.PathA, cfg.PathB = filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
		_, err := Start(context.Background(), cfg)
		assert.Error(t, err, "%+v", cfg)
	}
}
