//go:build linux

package bench

// The half-duplex rows (issue 16): two link ends with HalfDuplex over a
// virtual half-duplex cable at 115200 baud (one bus: bytes both ends send
// at once collide and arrive garbled at both, each end hears its own),
// library level: link and mux of both ends in this process over the
// serial driver, as the binary builds them with --half-duplex (package
// busrig).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sockmux/sockmux/internal/busrig"
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

func (s *suite) runHalfDuplex() (*halfDuplexResult, error) {
	res := &halfDuplexResult{Nominal: halfDuplexBaud / 10}
	ctx := context.Background()
	p, err := busrig.Start(ctx, s.dir, halfDuplexBaud, true)
	if err != nil {
		return nil, err
	}
	defer p.Stop()
	secs := 8.0
	samples := 200
	if s.quick {
		secs, samples = 3, 50
	}

	// Bulk one way: a download from B to A.
	atA, atB, err := p.Stream(ctx)
	if err != nil {
		return nil, err
	}
	if res.OneWay, err = busrig.Transfer(atB, atA, busrig.Random(1, int(secs*res.Nominal))); err != nil {
		return res, fmt.Errorf("one way: %w", err)
	}
	_ = atA.Close()

	// Bulk both ways at once.
	if atA, atB, err = p.Stream(ctx); err != nil {
		return nil, err
	}
	var upErr error
	var wg sync.WaitGroup
	n := int(secs / 2 * res.Nominal)
	wg.Go(func() { res.Up, upErr = busrig.Transfer(atA, atB, busrig.Random(2, n)) })
	res.Down, err = busrig.Transfer(atB, atA, busrig.Random(3, n))
	wg.Wait()
	if err = errors.Join(err, upErr); err != nil {
		return res, fmt.Errorf("both ways: %w", err)
	}
	_ = atA.Close()

	// The echo, idle and under a bulk download.
	echoA, echoB, err := p.Stream(ctx)
	if err != nil {
		return nil, err
	}
	go busrig.ServeEcho(echoB)
	if res.EchoIdle, err = busrig.Echo(echoA, samples/4); err != nil {
		return res, fmt.Errorf("idle echo: %w", err)
	}
	stop, err := p.Bulk(ctx)
	if err != nil {
		return res, err
	}
	time.Sleep(time.Second)
	res.Echo, err = busrig.Echo(echoA, samples)
	stop()
	st := p.Cable.Stats()
	res.Collisions = p.Cable.Collisions()
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
