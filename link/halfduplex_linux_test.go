//go:build linux

package link_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sockmux/sockmux/internal/busrig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The half-duplex tests run two link ends with HalfDuplex over a virtual
// half-duplex cable at 115200 baud (package busrig). They check that the
// turns work at all, on a machine that may be busy; `make bench` measures
// the targets (section half-duplex 115200).

func startBus(t *testing.T) *busrig.Pair {
	t.Helper()
	p, err := busrig.Start(context.Background(), t.TempDir(), 115200, true)
	require.NoError(t, err)
	t.Cleanup(p.Stop)
	return p
}

// TestHalfDuplexBulkOneWay: a bulk transfer arrives intact, the ends
// taking turns (the receiver acknowledges in the gaps of the sender's
// turns).
func TestHalfDuplexBulkOneWay(t *testing.T) {
	p := startBus(t)
	atA, atB, err := p.Stream(context.Background())
	require.NoError(t, err)
	rate, err := busrig.Transfer(atB, atA, busrig.Random(1, 4*int(p.Rate)))
	require.NoError(t, err)
	t.Logf("one way: %.0f B/s, %.3f of the line; %d chunks collided; cable %v", rate, rate/p.Rate, p.Cable.Collisions(), p.Cable.Stats())
	assert.Greater(t, rate/p.Rate, 0.4, "goodput of the line")
}

// TestHalfDuplexBulkBothWays: bulk both ways at once arrives intact both
// ways and neither direction starves.
func TestHalfDuplexBulkBothWays(t *testing.T) {
	p := startBus(t)
	atA, atB, err := p.Stream(context.Background())
	require.NoError(t, err)
	n := 2 * int(p.Rate)
	var up float64
	var upErr error
	var wg sync.WaitGroup
	wg.Go(func() { up, upErr = busrig.Transfer(atA, atB, busrig.Random(2, n)) })
	down, err := busrig.Transfer(atB, atA, busrig.Random(3, n))
	wg.Wait()
	require.NoError(t, upErr, "upload")
	require.NoError(t, err, "download")
	t.Logf("both ways: up %.0f B/s, down %.0f B/s, total %.3f of the line; cable %v", up, down, (up+down)/p.Rate, p.Cable.Stats())
	assert.Greater(t, min(up, down)/max(up, down), 0.3, "neither direction starves")
}

// TestHalfDuplexEchoUnderBulk: a 1-byte echo gets through while a bulk
// download keeps the bus busy.
func TestHalfDuplexEchoUnderBulk(t *testing.T) {
	p := startBus(t)
	ctx := context.Background()
	echoA, echoB, err := p.Stream(ctx)
	require.NoError(t, err)
	go busrig.ServeEcho(echoB)
	stop, err := p.Bulk(ctx)
	require.NoError(t, err)
	defer stop()
	time.Sleep(time.Second) // the bulk fills the line
	rtts, err := busrig.Echo(echoA, 40)
	require.NoError(t, err)
	p50, p99 := rtts[len(rtts)/2], rtts[len(rtts)*99/100]
	t.Logf("echo under bulk: p50 %v, p99 %v, max %v; cable %v", p50, p99, rtts[len(rtts)-1], p.Cable.Stats())
	assert.Less(t, p50, 500*time.Millisecond, "the echo gets turns")
}
