//go:build linux

package bench

// A diagnostic for the serial rows: the same bulk download as the
// end-to-end test, but with link and mux in this process over a cable
// (package cable) and the serial driver, so the link's counters say where
// the line's bytes went: full or short frames, frames sent twice, frames
// cut short for interactive data.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/sockmux/sockmux/cable"
	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/serialport"
)

// serialLibResult is what the sending link did during one download.
type serialLibResult struct {
	Baud       int
	Bytes      int64   // downloaded
	Goodput    float64 // bytes per second, first byte to last
	Nominal    float64
	LineOut    uint64 // bytes the sending link wrote, framing included
	Frames     uint64 // frames it wrote (data, and a few acknowledgements)
	Resent     uint64 // data frames sent again
	Cut        uint64 // frames cut short for interactive data
	PayloadOut uint64 // payload bytes sent for the first time
}

func (s *suite) serialLibrary(baud int, secs float64) (*serialLibResult, error) {
	res := &serialLibResult{Baud: baud, Nominal: float64(baud) / 10}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pathA, pathB := filepath.Join(s.dir, fmt.Sprintf("lib%dA", baud)), filepath.Join(s.dir, fmt.Sprintf("lib%dB", baud))
	cb, err := cable.Start(ctx, cable.Config{PathA: pathA, PathB: pathB, Baud: baud})
	if err != nil {
		return nil, err
	}
	defer cb.Close()
	mode := serialport.Mode{Baud: baud}
	da, err := serialport.New(pathA, mode, nil)
	if err != nil {
		return nil, err
	}
	defer da.Close()
	db, err := serialport.New(pathB, mode, nil)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	quiet := slog.New(slog.DiscardHandler)
	// As "sockmux link" configures a serial link (endpoint.StreamWindow).
	window := endpoint.StreamWindow(link.Properties{LineRate: int(res.Nominal)})
	var eps [2]*endpoint.Endpoint
	for i, d := range []link.Driver{da, db} {
		e, err := endpoint.New(endpoint.Options{Driver: d, Mux: mux.Config{StreamWindow: window}, AcceptStreams: true, Logger: quiet})
		if err != nil {
			return nil, err
		}
		eps[i] = e
	}
	ma, mb, lb := eps[0].Mux, eps[1].Mux, eps[1].Link
	var runs sync.WaitGroup
	for _, e := range eps {
		runs.Add(1)
		go func() {
			defer runs.Done()
			_ = e.Run(ctx)
		}()
	}
	defer func() {
		cancel()
		runs.Wait()
	}()
	octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
	defer ocancel()
	c, err := ma.Open(octx, mux.Info{Network: "tcp", Dest: "bench:1"})
	if err != nil {
		return nil, err
	}
	srv, err := mb.AcceptStream(octx)
	if err != nil {
		return nil, err
	}
	srv.Accept()
	if err := c.WaitAccepted(octx); err != nil {
		return nil, err
	}
	st := lb.Stats()
	line0, frames0, resent0, cut0, pay0 := st.BytesOut.Load(), st.FramesOut.Load(), st.FramesResent.Load(), st.Preemptions.Load(), st.PayloadOut.Load()
	n := int64(secs * res.Nominal)
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(srv, io.LimitReader(&patternReader{p: s.srv.pattern}, n))
		werr <- err
	}()
	_ = c.SetReadDeadline(time.Now().Add(time.Duration(secs*4+30) * time.Second))
	r, err := receive(c, s.srv.pattern, n, start)
	if err != nil {
		return nil, err
	}
	if err := <-werr; err != nil {
		return nil, errors.Join(errors.New("writing"), err)
	}
	res.Bytes, res.Goodput = r.Bytes, r.Rate()
	res.LineOut = st.BytesOut.Load() - line0
	res.Frames = st.FramesOut.Load() - frames0
	res.Resent = st.FramesResent.Load() - resent0
	res.Cut = st.Preemptions.Load() - cut0
	res.PayloadOut = st.PayloadOut.Load() - pay0
	return res, nil
}

// patternReader repeats a pattern, in writes of at most 32 KiB as the
// forwarder makes them.
type patternReader struct {
	p   []byte
	off int
}

func (r *patternReader) Read(b []byte) (int, error) {
	n := copy(b[:min(len(b), 32<<10)], r.p[r.off:])
	r.off = (r.off + n) % len(r.p)
	return n, nil
}

// String explains where the line's bytes went.
func (r *serialLibResult) String() string {
	avg := 0.0
	if r.Frames > 0 {
		avg = float64(r.PayloadOut) / float64(r.Frames)
	}
	return fmt.Sprintf("goodput %.0f B/s (%.3f of nominal); the sending link wrote %d bytes in %d frames, %.0f payload bytes per frame on average, %d data frames sent again, %d frames cut short for interactive data; %.3f of the bytes it wrote were the download",
		r.Goodput, r.Goodput/r.Nominal, r.LineOut, r.Frames, avg, r.Resent, r.Cut, float64(r.Bytes)/float64(r.LineOut))
}
