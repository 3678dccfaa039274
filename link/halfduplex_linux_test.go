//go:build linux

package link_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sockmux/sockmux/cable"
	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/serialport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// busPair is two half-duplex link ends over a virtual half-duplex cable:
// a bus on which both ends' bytes collide and each hears its own.
type busPair struct {
	a, b  *endpoint.Endpoint
	cable *cable.Cable
	rate  float64
}

func startBusPair(t *testing.T, baud int, halfDuplex bool) *busPair {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "ttyA"), filepath.Join(dir, "ttyB")
	cb, err := cable.Start(ctx, cable.Config{PathA: pathA, PathB: pathB, Baud: baud, HalfDuplex: true, Seed: 3})
	require.NoError(t, err)
	quiet := slog.New(slog.DiscardHandler)
	p := &busPair{cable: cb, rate: float64(baud) / 10}
	var eps [2]*endpoint.Endpoint
	var runs sync.WaitGroup
	for i, path := range []string{pathA, pathB} {
		d, err := serialport.New(path, serialport.Mode{Baud: baud}, quiet)
		require.NoError(t, err)
		window := endpoint.StreamWindow(link.Properties{LineRate: int(p.rate)})
		e, err := endpoint.New(endpoint.Options{Driver: d, Link: link.Config{HalfDuplex: halfDuplex}, Mux: mux.Config{StreamWindow: window}, AcceptStreams: true, Logger: quiet})
		require.NoError(t, err)
		eps[i] = e
		runs.Add(1)
		go func() {
			defer runs.Done()
			_ = e.Run(ctx)
		}()
	}
	t.Cleanup(func() {
		cancel()
		runs.Wait()
		_ = cb.Close()
	})
	p.a, p.b = eps[0], eps[1]
	return p
}

// stream opens a stream from A to B and returns both ends.
func (p *busPair) stream(t *testing.T) (atA, atB *mux.Stream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	defer func() { t.Logf("stream open in %v", time.Since(start)) }()
	c, err := p.a.Mux.Open(ctx, mux.Info{Network: "tcp", Dest: "x:1"})
	require.NoError(t, err)
	s, err := p.b.Mux.AcceptStream(ctx)
	require.NoError(t, err)
	s.Accept()
	require.NoError(t, c.WaitAccepted(ctx))
	return c, s
}

func randomData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// send writes data to w and closes it for writing; it reports the error.
func send(w *mux.Stream, data []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		if err == nil {
			err = w.CloseWrite()
		}
		done <- err
	}()
	return done
}

// receive reads r to its end and returns what came and how fast, from the
// first byte to the last.
func receive(t *testing.T, r *mux.Stream) ([]byte, float64) {
	t.Helper()
	require.NoError(t, r.SetReadDeadline(time.Now().Add(2*time.Minute)))
	var got []byte
	buf := make([]byte, 32<<10)
	var first time.Time
	firstN := 0
	for {
		n, err := r.Read(buf)
		if n > 0 && first.IsZero() {
			first, firstN = time.Now(), n
		}
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	return got, float64(len(got)-firstN) / time.Since(first).Seconds()
}

// TestHalfDuplexBulkOneWay: over a half-duplex bus, a bulk transfer
// arrives intact, near the line rate, the ends taking turns (the receiver
// answers with acknowledgements in gaps of the sender's bursts).
func TestHalfDuplexBulkOneWay(t *testing.T) {
	p := startBusPair(t, 115200, true)
	atA, atB := p.stream(t)
	data := randomData(1, 4*int(p.rate)) // four seconds of line time
	done := send(atB, data)
	got, rate := receive(t, atA)
	require.NoError(t, <-done)
	require.Equal(t, sha256.Sum256(data), sha256.Sum256(got), "the download arrives intact (%d of %d bytes)", len(got), len(data))
	t.Logf("one way: %.0f B/s, %.3f of the line; %d chunks collided; cable %v", rate, rate/p.rate, p.cable.Collisions(), p.cable.Stats())
	// The bench measures the target (0.85); here, on a shared machine,
	// the discipline must at least keep the line mostly busy.
	assert.Greater(t, rate/p.rate, 0.6, "goodput of the line")
}

// TestHalfDuplexBulkBothWays: bulk both ways at once arrives intact both
// ways and neither direction starves.
func TestHalfDuplexBulkBothWays(t *testing.T) {
	p := startBusPair(t, 115200, true)
	atA, atB := p.stream(t)
	up, down := randomData(2, 2*int(p.rate)), randomData(3, 2*int(p.rate))
	doneUp, doneDown := send(atA, up), send(atB, down)
	var gotUp, gotDown []byte
	var rateUp, rateDown float64
	var wg sync.WaitGroup
	wg.Go(func() { gotUp, rateUp = receive(t, atB) })
	gotDown, rateDown = receive(t, atA)
	wg.Wait()
	require.NoError(t, <-doneUp)
	require.NoError(t, <-doneDown)
	require.True(t, bytes.Equal(up, gotUp), "upload intact")
	require.True(t, bytes.Equal(down, gotDown), "download intact")
	t.Logf("both ways: up %.0f B/s, down %.0f B/s, total %.3f of the line; cable %v", rateUp, rateDown, (rateUp+rateDown)/p.rate, p.cable.Stats())
	assert.Greater(t, min(rateUp, rateDown)/max(rateUp, rateDown), 0.5, "neither direction starves")
}

// TestHalfDuplexEchoUnderBulk: a 1-byte echo gets through while a bulk
// download keeps the bus busy.
func TestHalfDuplexEchoUnderBulk(t *testing.T) {
	p := startBusPair(t, 115200, true)
	bulkA, bulkB := p.stream(t)
	echoA, echoB := p.stream(t)
	stop := make(chan struct{})
	go func() { // the echo server at B
		b := make([]byte, 1)
		for {
			if _, err := io.ReadFull(echoB, b); err != nil {
				return
			}
			if _, err := echoB.Write(b); err != nil {
				return
			}
		}
	}()
	go func() { // the bulk download, B to A, until the test ends
		chunk := randomData(4, 4096)
		for {
			select {
			case <-stop:
				_ = bulkB.CloseWrite()
				return
			default:
			}
			if _, err := bulkB.Write(chunk); err != nil {
				return
			}
		}
	}()
	go func() { _, _ = io.Copy(io.Discard, bulkA) }()
	defer close(stop)
	time.Sleep(time.Second) // the bulk fills the line
	var rtts []time.Duration
	b := []byte{'x'}
	require.NoError(t, echoA.SetReadDeadline(time.Now().Add(time.Minute)))
	for range 40 {
		time.Sleep(time.Duration(30+rand.IntN(100)) * time.Millisecond)
		start := time.Now()
		_, err := echoA.Write(b)
		require.NoError(t, err)
		_, err = io.ReadFull(echoA, b)
		require.NoError(t, err)
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	p50, p99 := rtts[len(rtts)/2], rtts[len(rtts)*99/100]
	t.Logf("echo under bulk: p50 %v, p99 %v, max %v; cable %v", p50, p99, rtts[len(rtts)-1], p.cable.Stats())
	// The bench measures the target (p99 150 ms) on 200 samples; here a
	// loose bound that a broken discipline (no turn for the echo) misses.
	assert.Less(t, p50, 300*time.Millisecond)
}
