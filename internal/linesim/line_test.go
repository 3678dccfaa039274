// Package linesim runs the real link and mux over a simulated serial line
// in virtual time (testing/synctest): goodput and interactive latency on a
// slow line are measured exactly, unaffected by how busy the machine is.
package linesim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/internal/memline"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

type driver struct {
	*memline.End
	props link.Properties
}

func (d driver) Properties() link.Properties { return d.props }

// end is one end of a simulated link: a link and its mux.
type end struct {
	l *link.Link
	m *mux.Mux
}

// startEnd starts an end as sockmux link configures one: its stream window
// sized to the line by the endpoint (endpoint.StreamWindow), FEC on. Not
// compression: the streams carry random bytes, which deflate at its
// strongest would search in vain at every frame (under the race detector
// minutes of CPU; the compression tests are in package link and bench).
func startEnd(t *testing.T, ctx context.Context, wg *sync.WaitGroup, d link.Driver) *end {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := endpoint.New(endpoint.Options{Driver: d, AcceptStreams: true, Logger: log,
		Link: link.Config{Compress: link.CompressOff}})
	require.NoError(t, err)
	wg.Add(1)
	go func() { defer wg.Done(); _ = e.Run(ctx) }()
	return &end{l: e.Link, m: e.Mux}
}

type lineResult struct {
	goodput  float64 // payload bytes per second of the bulk stream
	echo     []time.Duration
	lineRate int
}

// runLine simulates two ends over a line of rate bytes per second: a
// bulk stream from b to a for dur, and (when echo) a 1-byte echo from a
// through b and back, every 20-57 ms.
func runLine(t *testing.T, rate int, ber float64, dur time.Duration, echo, reportQueue bool) lineResult {
	return runLinePaced(t, rate, ber, dur, echo, reportQueue, func(i int) time.Duration { return time.Duration(20+i%37) * time.Millisecond })
}

// runLinePaced is runLine with the echo's pause after round trip i.
func runLinePaced(t *testing.T, rate int, ber float64, dur time.Duration, echo, reportQueue bool, pause func(i int) time.Duration) lineResult {
	var res lineResult
	synctest.Test(t, func(t *testing.T) {
		cable := memline.New(1)
		cable.Rate = rate
		cable.BER = ber
		cable.HideQueue = !reportQueue
		props := link.Properties{LineRate: rate}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		a := startEnd(t, ctx, &wg, driver{cable.End(0), props})
		b := startEnd(t, ctx, &wg, driver{cable.End(1), props})

		// b accepts streams: the bulk one it fills, the echo one it echoes.
		go func() {
			for {
				s, err := b.m.AcceptStream(ctx)
				if err != nil {
					return
				}
				s.Accept()
				go func() {
					defer s.Close()
					if s.Info().Dest == "bulk" {
						buf := make([]byte, 32<<10)
						for {
							if _, err := s.Write(buf); err != nil {
								return
							}
						}
					}
					_, _ = io.Copy(s, s)
				}()
			}
		}()
		bulk, err := a.m.Open(ctx, mux.Info{Dest: "bulk"})
		require.NoError(t, err)
		var got atomic.Int64
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := bulk.Read(buf)
				got.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
		time.Sleep(3 * time.Second) // settle: windows open, queues fill
		start, n0 := time.Now(), got.Load()
		if echo {
			e, err := a.m.Open(ctx, mux.Info{Dest: "echo"})
			require.NoError(t, err)
			one := []byte{'x'}
			for i := 0; time.Since(start) < dur; i++ {
				t0 := time.Now()
				_, err := e.Write(one)
				require.NoError(t, err)
				_, err = io.ReadFull(e, one)
				require.NoError(t, err)
				res.echo = append(res.echo, time.Since(t0))
				time.Sleep(pause(i))
			}
		} else {
			time.Sleep(dur)
		}
		res.goodput = float64(got.Load()-n0) / time.Since(start).Seconds()
		t.Logf("a: %s; %d preemptions", a.l.Stats(), a.l.Stats().Preemptions.Load())
		t.Logf("b: %s; %d preemptions", b.l.Stats(), b.l.Stats().Preemptions.Load())
		res.lineRate = rate
		cancel()
		a.m.Close()
		b.m.Close()
		wg.Wait()
	})
	return res
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func TestBulkGoodput(t *testing.T) {
	for _, tc := range []struct {
		baud int
		ber  float64
		want float64
	}{
		{9600, 0, 0.95},
		{115200, 0, 0.97},
		{115200, 1e-5, 0.90},
		{921600, 0, 0.95},
	} {
		t.Run(fmt.Sprintf("%d-ber%g", tc.baud, tc.ber), func(t *testing.T) {
			rate := tc.baud / 10
			for _, q := range []bool{true, false} {
				r := runLine(t, rate, tc.ber, 20*time.Second, false, q)
				ratio := r.goodput / float64(rate)
				t.Logf("%d baud, BER %g, OS queue visible %v: goodput %.0f B/s = %.3f of the line", tc.baud, tc.ber, q, r.goodput, ratio)
				assert.GreaterOrEqual(t, ratio, tc.want)
			}
		})
	}
}

// TestNoisyLineGoodput: on a very noisy 115200-baud line the link keeps
// moving data. With the FEC stage, far beyond what the best frame size
// allows ARQ alone (about 0.77, 0.41 and 0.18 of the line at BER 1e-4,
// 1e-3 and 3e-3 with our headers; measured before FEC 0.71, 0.32-0.37 and
// 0.14-0.17).
func TestNoisyLineGoodput(t *testing.T) {
	for _, tc := range []struct {
		ber  float64
		want float64
	}{
		// Bounds with room for the race detector's scheduling.
		{1e-4, 0.80},
		{1e-3, 0.70},
		{3e-3, 0.60},
		{1e-2, 0.40},
	} {
		t.Run(fmt.Sprintf("ber%g", tc.ber), func(t *testing.T) {
			r := runLine(t, 11520, tc.ber, 60*time.Second, false, false)
			ratio := r.goodput / 11520
			t.Logf("BER %g: goodput %.0f B/s = %.3f of the line", tc.ber, r.goodput, ratio)
			assert.GreaterOrEqual(t, ratio, tc.want)
		})
	}
}

func TestInteractiveUnderBulk(t *testing.T) {
	for _, q := range []bool{true, false} {
		r := runLine(t, 11520, 0, 30*time.Second, true, q)
		p50, p99, worst := pct(r.echo, 0.5), pct(r.echo, 0.99), pct(r.echo, 1)
		t.Logf("115200 baud, OS queue visible %v: echo p50 %v p99 %v max %v over %d samples; bulk %.0f B/s = %.3f of the line",
			q, p50, p99, worst, len(r.echo), r.goodput, r.goodput/11520)
		assert.LessOrEqual(t, p99, 60*time.Millisecond)
		assert.GreaterOrEqual(t, r.goodput/11520, 0.90, "bulk keeps the line busy meanwhile")
	}
	// Echoes back to back (5-25 ms apart): still interactive.
	r := runLinePaced(t, 11520, 0, 30*time.Second, true, false, func(i int) time.Duration { return time.Duration(5+i%21) * time.Millisecond })
	p50, p99 := pct(r.echo, 0.5), pct(r.echo, 0.99)
	t.Logf("115200 baud, echoes 5-25 ms apart: p50 %v p99 %v over %d samples; bulk %.3f of the line", p50, p99, len(r.echo), r.goodput/11520)
	assert.LessOrEqual(t, p99, 60*time.Millisecond)
	assert.GreaterOrEqual(t, r.goodput/11520, 0.85, "bulk keeps the line busy meanwhile")
}
