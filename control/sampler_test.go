package control

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/sockmux/sockmux/mux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCollectorSleepsWhileIdle(t *testing.T) {
	a, b := pairWithBare(t)
	col := NewCollector(Source{Name: "t", Link: a.l, Mux: a.m, Driver: a.drv}, 1)
	col.interval, col.idle = 20*time.Millisecond, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); col.Run(ctx) }()

	// Idle: the first sample, and one more that found nothing moved (a
	// fixed 200 ms ticker would have taken five).
	time.Sleep(time.Second)
	col.mu.Lock()
	idle := col.samples
	col.mu.Unlock()
	assert.LessOrEqual(t, idle, 2, "an idle link is not sampled every interval")

	// Payload moving: the idle sleep is not cut short (nothing wakes it),
	// but a snapshot samples on demand and reports the goodput.
	octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ocancel()
	s, err := a.m.Open(octx, mux.Info{Network: "tcp", Dest: "x:1"})
	require.NoError(t, err)
	peer, err := b.m.AcceptStream(octx)
	require.NoError(t, err)
	peer.Accept()
	go func() { _, _ = s.Write(make([]byte, 64<<10)) }()
	_, err = io.CopyN(io.Discard, peer, 64<<10)
	require.NoError(t, err)
	st := col.Snapshot()
	assert.Positive(t, st.GoodputOut)
	assert.Positive(t, st.UpSeconds)
	cancel()
	<-done
}

func TestCollectorSamplesEveryIntervalWhilePayloadMoves(t *testing.T) {
	a, b := pairWithBare(t)
	col := NewCollector(Source{Name: "t", Link: a.l, Mux: a.m, Driver: a.drv}, 1)
	col.interval, col.idle = 20*time.Millisecond, time.Hour
	octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ocancel()
	s, err := a.m.Open(octx, mux.Info{Network: "tcp", Dest: "x:1"})
	require.NoError(t, err)
	peer, err := b.m.AcceptStream(octx)
	require.NoError(t, err)
	peer.Accept()
	stop := make(chan struct{})
	go func() {
		buf := make([]byte, 1024)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Write(buf); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	go func() { _, _ = io.Copy(io.Discard, peer) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); col.Run(ctx) }()
	time.Sleep(400 * time.Millisecond)
	cancel()
	<-done
	close(stop)
	col.mu.Lock()
	n := col.samples
	col.mu.Unlock()
	assert.GreaterOrEqual(t, n, 8, "sampled about every interval while payload moved")
}
