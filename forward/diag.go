package forward

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

// The link test's diagnostic service (sockmux test-link), the service
// ServiceTestLink. A stream for it is not routed anywhere: the forwarder at
// its exit serves it itself, whatever the --server rules and --allow say,
// because it reaches nothing beyond this process: it only sinks, makes or
// echoes bytes. The stream's destination names what of it is asked for:
//
//	discard  read and drop everything; report what arrived (Report)
//	source   send pseudo-random bytes until the opener ends the stream
//	echo     send back every byte
//	counters answer each byte read with a line of JSON: this end's link
//	         counters (LinkCounters), where Config.LinkCounters reads them
//
// The exit answers every diagnostic stream with DiagMagic before anything
// else, so an opener knows it reached the service.
const (
	DiagDiscard  = "discard"
	DiagSource   = "source"
	DiagEcho     = "echo"
	DiagCounters = "counters"
	DiagMagic    = "SMXDIAG1"
)

// LinkCounters are the link counters the counters service tells.
type LinkCounters struct {
	FramesOut    uint64 `json:"frames_out"`
	FramesIn     uint64 `json:"frames_in"`
	FramesResent uint64 `json:"frames_resent"`
	FramesBad    uint64 `json:"frames_bad"`
	FramesDup    uint64 `json:"frames_dup"`
	Preemptions  uint64 `json:"preemptions"`
}

// CountersOf reads the counters the counters service tells from a
// link's statistics.
func CountersOf(st *link.Stats) LinkCounters {
	return LinkCounters{FramesOut: st.FramesOut.Load(), FramesIn: st.FramesIn.Load(),
		FramesResent: st.FramesResent.Load(), FramesBad: st.FramesBad.Load(), FramesDup: st.FramesDup.Load(),
		Preemptions: st.Preemptions.Load()}
}

// Sub is c minus an earlier reading (0 where a counter went back, as
// after a restart).
func (c LinkCounters) Sub(before LinkCounters) LinkCounters {
	d := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return LinkCounters{d(c.FramesOut, before.FramesOut), d(c.FramesIn, before.FramesIn),
		d(c.FramesResent, before.FramesResent), d(c.FramesBad, before.FramesBad),
		d(c.FramesDup, before.FramesDup), d(c.Preemptions, before.Preemptions)}
}

// DiagReportSize is the size of a discard report on the wire.
const DiagReportSize = 24

// Report is what the discard service tells its opener, every
// diagReportEvery while bytes arrive and once more at the end: Total bytes
// arrived so far, First of them in the first read, and Span from the first
// read to the latest, by the exit's clock. (Total-First)/Span is the rate
// at which the bytes arrived, whatever was buffered on the way.
type Report struct {
	Total, First uint64
	Span         time.Duration
}

// Marshal encodes r: three big-endian uint64s.
func (r Report) Marshal() []byte {
	b := make([]byte, DiagReportSize)
	binary.BigEndian.PutUint64(b[0:], r.Total)
	binary.BigEndian.PutUint64(b[8:], r.First)
	binary.BigEndian.PutUint64(b[16:], uint64(max(r.Span, 0)))
	return b
}

// ParseReport decodes a report; it fails on one that cannot be true.
func ParseReport(b []byte) (Report, error) {
	if len(b) != DiagReportSize {
		return Report{}, fmt.Errorf("link test report of %d bytes, want %d", len(b), DiagReportSize)
	}
	r := Report{Total: binary.BigEndian.Uint64(b[0:]), First: binary.BigEndian.Uint64(b[8:])}
	span := binary.BigEndian.Uint64(b[16:])
	if r.First > r.Total || span > 1<<62 {
		return Report{}, errors.New("link test report out of range")
	}
	r.Span = time.Duration(span)
	return r, nil
}

// Rate is the arrival rate in bytes per second; 0 before two reads.
func (r Report) Rate() float64 {
	if r.Span <= 0 {
		return 0
	}
	return float64(r.Total-r.First) / r.Span.Seconds()
}

// maxDiagStreams bounds the diagnostic streams served at once by this
// process; more are refused with CodeLimit. A link test uses three.
const maxDiagStreams = 16

var diagStreams atomic.Int32

// diagReportEvery is how often the discard service reports.
const diagReportEvery = 200 * time.Millisecond

// diagChunk is how much the services read or write at a time.
const diagChunk = 16 << 10

// serveDiag serves a diagnostic stream from the far end over m.
func serveDiag(ctx context.Context, m *mux.Mux, s *mux.Stream, counters func() LinkCounters, log *slog.Logger) {
	service := s.Info().Dest
	log = log.With("test_service", service)
	switch service {
	case DiagDiscard, DiagSource, DiagEcho:
	case DiagCounters:
		if counters == nil {
			log.Debug("stream refused", "reason", "no link counters here")
			s.Reset(mux.CodeNoRoute, "no link test counters here")
			return
		}
	default:
		log.Warn("stream refused", "reason", "no such link test service")
		s.Reset(mux.CodeNoRoute, fmt.Sprintf("no link test service %q (want discard, source, echo or counters)", service))
		return
	}
	if diagStreams.Add(1) > maxDiagStreams {
		diagStreams.Add(-1)
		log.Warn("stream refused", "reason", "too many link test streams")
		s.Reset(mux.CodeLimit, fmt.Sprintf("more than %d link test streams at once", maxDiagStreams))
		return
	}
	defer diagStreams.Add(-1)
	s.Accept()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	defer s.Close()
	if _, err := io.WriteString(s, DiagMagic); err != nil {
		return
	}
	log.Debug("link test stream")
	var err error
	switch service {
	case DiagDiscard:
		err = diagDiscard(s)
	case DiagSource:
		err = diagSource(s)
	case DiagEcho:
		if _, err = io.Copy(s, s); err == nil {
			err = s.CloseWrite()
		}
	case DiagCounters:
		err = diagCounters(s, counters)
	}
	log.Debug("link test stream ended", "err", err)
}

// diagDiscard reads s to its end, reporting what arrived.
func diagDiscard(s *mux.Stream) error {
	var (
		mu      sync.Mutex
		rep     Report
		started time.Time
		changed bool
	)
	done := make(chan struct{})
	reporter := make(chan error, 1)
	go func() {
		t := time.NewTicker(diagReportEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				reporter <- nil
				return
			case <-t.C:
			}
			mu.Lock()
			r, send := rep, changed
			changed = false
			mu.Unlock()
			if send {
				if _, err := s.Write(r.Marshal()); err != nil {
					reporter <- err
					return
				}
			}
		}
	}()
	buf := make([]byte, diagChunk)
	var rerr error
	for {
		n, err := s.Read(buf)
		if n > 0 {
			now := time.Now()
			mu.Lock()
			if rep.Total == 0 {
				started, rep.First = now, uint64(n)
			}
			rep.Total += uint64(n)
			rep.Span = now.Sub(started)
			changed = true
			mu.Unlock()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				rerr = err
			}
			break
		}
	}
	close(done)
	if err := <-reporter; err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	mu.Lock()
	r := rep
	mu.Unlock()
	if _, err := s.Write(r.Marshal()); err != nil {
		return err
	}
	return s.CloseWrite()
}

// diagCounters answers each byte read with the link's counters.
func diagCounters(s *mux.Stream, read func() LinkCounters) error {
	var b [1]byte
	for {
		if _, err := s.Read(b[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return s.CloseWrite()
			}
			return err
		}
		line, _ := json.Marshal(read())
		if _, err := s.Write(append(line, '\n')); err != nil {
			return err
		}
	}
}

// ReadCounters asks a counters stream (OpenDiag(..., DiagCounters)) for
// the far end's link counters once.
func ReadCounters(s *mux.Stream, r *bufio.Reader, deadline time.Time) (LinkCounters, error) {
	_ = s.SetDeadline(deadline)
	defer s.SetDeadline(time.Time{})
	var c LinkCounters
	if _, err := s.Write([]byte{'?'}); err != nil {
		return c, err
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(line, &c); err != nil {
		return c, fmt.Errorf("the far end's link counters: %w", err)
	}
	return c, nil
}

// diagSource writes pseudo-random bytes to s until the stream fails.
func diagSource(s *mux.Stream) error {
	buf := make([]byte, diagChunk)
	x := uint64(0x9e3779b97f4a7c15)
	for {
		DiagNoise(buf, &x)
		if _, err := s.Write(buf); err != nil {
			return err
		}
	}
}

// DiagNoise fills p (a multiple of 8 bytes long) with the next bytes of
// the xorshift sequence whose state is *x (not 0). A link test sends
// fresh bytes every time, never a buffer again, so that a compressing
// link has nothing to find and the test measures the line.
func DiagNoise(p []byte, x *uint64) {
	v := *x
	for i := 0; i+8 <= len(p); i += 8 {
		v ^= v << 13
		v ^= v >> 7
		v ^= v << 17
		binary.LittleEndian.PutUint64(p[i:], v)
	}
	*x = v
}

// OpenDiag opens a stream to the far end's link test service (DiagDiscard,
// DiagSource, DiagEcho or DiagCounters) and waits for its greeting. The
// caller checks first that the far end serves ServiceTestLink (its link's
// PeerServes).
func OpenDiag(ctx context.Context, m *mux.Mux, service string) (*mux.Stream, error) {
	s, err := m.Open(ctx, mux.Info{Service: ServiceTestLink, Dest: service, Client: "sockmux test-link"})
	if err != nil {
		return nil, err
	}
	if err := s.WaitAccepted(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("the far end's link test service %q: %w", service, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetReadDeadline(dl)
	}
	var hello [len(DiagMagic)]byte
	_, err = io.ReadFull(s, hello[:])
	_ = s.SetReadDeadline(time.Time{})
	if err != nil || string(hello[:]) != DiagMagic {
		s.Close()
		if err == nil {
			err = errors.New("it answered with something else")
		}
		return nil, fmt.Errorf("the far end names the link test service but does not serve it: %w", err)
	}
	return s, nil
}
