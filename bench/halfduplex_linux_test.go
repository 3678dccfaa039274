//go:build linux

package bench

// The half-duplex rows (issue 16): two link ends with HalfDuplex over a
// virtual half-duplex cable at 115200 baud (one bus: bytes both ends send
// at once collide and arrive garbled at both, each end hears its own),
// library level: link and mux of both ends in this process over the
// serial driver, as the binary builds them with --half-duplex.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sockmux/sockmux/cable"
	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/serialport"
)

const halfDuplexBaud = 115200

// halfDuplexResult is what the half-duplex section measured.
type halfDuplexResult struct {
	Nominal             float64 // bytes per second of the line
	OneWay              float64 // bulk one way, bytes per second
	Up, Down            float64 // bulk both ways at once
	Echo                []time.Duration
	EchoIdle            []time.Duration
	Collisions          int64 // chunks the cable garbled for collisions, over the section
	CollidedB, CarriedB int64
}

// hdPair is two half-duplex link ends over a half-duplex cable.
type hdPair struct {
	a, b  *mux.Mux
	cable *cable.Cable
	stop  func()
}

func (s *suite) startHalfDuplex(ctx context.Context) (*hdPair, error) {
	pathA, pathB := filepath.Join(s.dir, "hdA"), filepath.Join(s.dir, "hdB")
	cb, err := cable.Start(ctx, cable.Config{PathA: pathA, PathB: pathB, Baud: halfDuplexBaud, HalfDuplex: true})
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(ctx)
	var runs sync.WaitGroup
	p := &hdPair{cable: cb}
	p.stop = func() {
		cancel()
		runs.Wait()
		_ = cb.Close()
	}
	var muxes [2]*mux.Mux
	for i, path := range []string{pathA, pathB} {
		d, err := serialport.New(path, serialport.Mode{Baud: halfDuplexBaud}, quiet)
		if err != nil {
			p.stop()
			return nil, err
		}
		window := endpoint.StreamWindow(link.Properties{LineRate: halfDuplexBaud / 10})
		e, err := endpoint.New(endpoint.Options{Driver: d, Link: link.Config{HalfDuplex: true}, Mux: mux.Config{StreamWindow: window}, AcceptStreams: true, Logger: quiet})
		if err != nil {
			p.stop()
			return nil, err
		}
		muxes[i] = e.Mux
		runs.Add(1)
		go func() {
			defer runs.Done()
			_ = e.Run(ctx)
		}()
	}
	p.a, p.b = muxes[0], muxes[1]
	return p, nil
}

// stream opens a stream from A, accepted at B.
func (p *hdPair) stream(ctx context.Context) (atA, atB *mux.Stream, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if atA, err = p.a.Open(ctx, mux.Info{Network: "tcp", Dest: "bench:1"}); err != nil {
		return nil, nil, err
	}
	if atB, err = p.b.AcceptStream(ctx); err != nil {
		return nil, nil, err
	}
	atB.Accept()
	return atA, atB, atA.WaitAccepted(ctx)
}

func hdRandom(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// hdTransfer writes data at w, half-closes, and reads it at r: the rate
// from the first byte read to the last, and whether it arrived intact.
func hdTransfer(w, r *mux.Stream, data []byte) (float64, error) {
	werr := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		if err == nil {
			err = w.CloseWrite()
		}
		werr <- err
	}()
	_ = r.SetReadDeadline(time.Now().Add(3 * time.Minute))
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
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if err := <-werr; err != nil {
		return 0, err
	}
	if !bytes.Equal(got, data) {
		return 0, fmt.Errorf("%d of %d bytes arrived, not the bytes sent", len(got), len(data))
	}
	return float64(len(got)-firstN) / time.Since(first).Seconds(), nil
}

// hdEcho times n 1-byte round trips at typing pace (30-130 ms apart).
func hdEcho(c *mux.Stream, n int) ([]time.Duration, error) {
	var rtts []time.Duration
	b := []byte{'x'}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	for range n {
		time.Sleep(time.Duration(30+rand.IntN(100)) * time.Millisecond)
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			return rtts, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return rtts, err
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	return rtts, nil
}

func (s *suite) runHalfDuplex() (*halfDuplexResult, error) {
	res := &halfDuplexResult{Nominal: halfDuplexBaud / 10}
	ctx := context.Background()
	p, err := s.startHalfDuplex(ctx)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	secs := 8.0
	samples := 200
	if s.quick {
		secs, samples = 3, 50
	}

	// Bulk one way: a download from B to A.
	atA, atB, err := p.stream(ctx)
	if err != nil {
		return nil, err
	}
	if res.OneWay, err = hdTransfer(atB, atA, hdRandom(1, int(secs*res.Nominal))); err != nil {
		return res, fmt.Errorf("one way: %w", err)
	}
	_ = atA.Close()

	// Bulk both ways at once.
	atA, atB, err = p.stream(ctx)
	if err != nil {
		return nil, err
	}
	var upErr error
	var wg sync.WaitGroup
	n := int(secs / 2 * res.Nominal)
	wg.Go(func() { res.Up, upErr = hdTransfer(atA, atB, hdRandom(2, n)) })
	res.Down, err = hdTransfer(atB, atA, hdRandom(3, n))
	wg.Wait()
	if err = errors.Join(err, upErr); err != nil {
		return res, fmt.Errorf("both ways: %w", err)
	}
	_ = atA.Close()

	// The echo, idle and under a bulk download.
	echoA, echoB, err := p.stream(ctx)
	if err != nil {
		return nil, err
	}
	go func() {
		_, _ = io.Copy(echoB, echoB)
	}()
	if res.EchoIdle, err = hdEcho(echoA, samples/4); err != nil {
		return res, fmt.Errorf("idle echo: %w", err)
	}
	bulkA, bulkB, err := p.stream(ctx)
	if err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	go func() {
		chunk := hdRandom(4, 4096)
		for {
			select {
			case <-stop:
				_ = bulkB.Close()
				return
			default:
			}
			if _, err := bulkB.Write(chunk); err != nil {
				return
			}
		}
	}()
	go func() { _, _ = io.Copy(io.Discard, bulkA) }()
	time.Sleep(time.Second)
	res.Echo, err = hdEcho(echoA, samples)
	close(stop)
	st := p.cable.Stats()
	res.Collisions = p.cable.Collisions()
	res.CollidedB = st.AtoB.Collided + st.BtoA.Collided
	res.CarriedB = st.AtoB.Read + st.BtoA.Read
	if err != nil {
		return res, fmt.Errorf("echo under bulk: %w", err)
	}
	return res, nil
}

func (s *suite) runHalfDuplexSection() {
	s.section(fmt.Sprintf("half-duplex %d", halfDuplexBaud), func() error {
		r, err := s.runHalfDuplex()
		s.halfDuplex = r
		if r != nil {
			s.logf("    half duplex: one way %.3f, both ways %.3f + %.3f; echo p99 %v; %d chunks collided", r.OneWay/r.Nominal, r.Up/r.Nominal, r.Down/r.Nominal, percentile(r.Echo, 99), r.Collisions)
		}
		return err
	})
}

// halfDuplexRows are the rows of issue 16's half-duplex targets.
func (s *suite) halfDuplexRows(failed func(name, section, target string) bool) []row {
	section := fmt.Sprintf("half-duplex %d", halfDuplexBaud)
	name := "half-duplex bus at 115200 (link --half-duplex on cable --half-duplex), bulk one way"
	if failed(name, section, "≥ 0.85") || s.halfDuplex == nil {
		return nil
	}
	r := s.halfDuplex
	collided := fmt.Sprintf("%d chunks collided over the section (%d of %d bytes on the bus)", r.Collisions, r.CollidedB, r.CarriedB)
	one := r.OneWay / r.Nominal
	both := (r.Up + r.Down) / r.Nominal
	fair := min(r.Up, r.Down) / max(r.Up, r.Down)
	rows := []row{
		{name, fmt.Sprintf("%.0f B/s, intact", r.OneWay), fmt.Sprintf("nominal line rate %.0f B/s", r.Nominal),
			fmt.Sprintf("%.3f", one), "≥ 0.85", verdict(one >= 0.85)},
		{"half-duplex, bulk both ways at once", fmt.Sprintf("up %.0f B/s + down %.0f B/s, intact (the slower %.2f of the faster)", r.Up, r.Down, fair),
			fmt.Sprintf("nominal %.0f B/s", r.Nominal), fmt.Sprintf("%.3f in total", both), "≥ 0.80 in total, neither starved", verdict(both >= 0.80 && fair >= 0.5)},
	}
	if len(r.Echo) > 0 {
		p99 := percentile(r.Echo, 99)
		rows = append(rows, row{"half-duplex, 1-byte echo round trip while a bulk download runs",
			fmt.Sprintf("p50 %s, p99 %s, max %s (%d samples at typing pace)", ms(percentile(r.Echo, 50)), ms(p99), ms(r.Echo[len(r.Echo)-1]), len(r.Echo)),
			fmt.Sprintf("idle bus: p50 %s, p99 %s; %s", ms(percentile(r.EchoIdle, 50)), ms(percentile(r.EchoIdle, 99)), collided),
			"", "p99 ≤ 150 ms", verdict(p99 <= 150*time.Millisecond)})
	}
	return rows
}
