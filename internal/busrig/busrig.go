package busrig

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

// Pair is two link ends over a half-duplex cable. A opens streams, B
// accepts them.
type Pair struct {
	A, B  *mux.Mux
	Cable *cable.Cable
	Rate  float64 // the line's bytes per second
	stop  func()
}

// Start starts the cable (in dir) and the two ends at baud; halfDuplex
// is the ends' link.Config.HalfDuplex (the cable is a bus either way).
func Start(ctx context.Context, dir string, baud int, halfDuplex bool) (*Pair, error) {
	pathA, pathB := filepath.Join(dir, "busA"), filepath.Join(dir, "busB")
	cb, err := cable.Start(ctx, cable.Config{PathA: pathA, PathB: pathB, Baud: baud, HalfDuplex: true})
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(ctx)
	var runs sync.WaitGroup
	p := &Pair{Cable: cb, Rate: float64(baud) / 10}
	p.stop = func() {
		cancel()
		runs.Wait()
		_ = cb.Close()
	}
	var muxes [2]*mux.Mux
	for i, path := range []string{pathA, pathB} {
		d, err := serialport.New(path, serialport.Mode{Baud: baud}, quiet)
		if err != nil {
			p.stop()
			return nil, err
		}
		window := endpoint.StreamWindow(link.Properties{LineRate: int(p.Rate)})
		e, err := endpoint.New(endpoint.Options{Driver: d, Link: link.Config{HalfDuplex: halfDuplex}, Mux: mux.Config{StreamWindow: window}, AcceptStreams: true, Logger: quiet})
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
	p.A, p.B = muxes[0], muxes[1]
	return p, nil
}

// Stop stops the ends and the cable.
func (p *Pair) Stop() { p.stop() }

// Stream opens a stream from A, accepted at B.
func (p *Pair) Stream(ctx context.Context) (atA, atB *mux.Stream, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if atA, err = p.A.Open(ctx, mux.Info{Network: "tcp", Dest: "bus:1"}); err != nil {
		return nil, nil, err
	}
	if atB, err = p.B.AcceptStream(ctx); err != nil {
		return nil, nil, err
	}
	atB.Accept()
	return atA, atB, atA.WaitAccepted(ctx)
}

// Random returns n pseudo-random bytes from seed.
func Random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Transfer writes data at w, half-closes, and reads it at r to the end:
// the rate from the first byte read to the last, or an error when it did
// not arrive intact.
func Transfer(w, r *mux.Stream, data []byte) (float64, error) {
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

// Echo times n 1-byte round trips on c at typing pace (30-130 ms apart),
// sorted; the far end must echo (ServeEcho).
func Echo(c *mux.Stream, n int) ([]time.Duration, error) {
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

// ServeEcho echoes what arrives on s until it ends.
func ServeEcho(s *mux.Stream) { _, _ = io.Copy(s, s) }

// Bulk keeps a download from B to A going on a stream of its own until
// the returned stop is called.
func (p *Pair) Bulk(ctx context.Context) (stop func(), err error) {
	atA, atB, err := p.Stream(ctx)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		chunk := Random(4, 4096)
		for {
			select {
			case <-done:
				_ = atB.Close()
				return
			default:
			}
			if _, err := atB.Write(chunk); err != nil {
				return
			}
		}
	}()
	go func() { _, _ = io.Copy(io.Discard, atA) }()
	return func() { close(done) }, nil
}
