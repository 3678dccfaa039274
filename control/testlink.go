package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

// TestOptions ask for a link test (sockmux test-link).
type TestOptions struct {
	// Seconds is how long the test runs in all: a few echo round trips,
	// then the upload and the download one after the other, each for half
	// of what is left, or both at once for all of it.
	Seconds float64 `json:"seconds"`
	// Both measures upload and download at the same time.
	Both bool `json:"both,omitempty"`
}

// Limits of TestOptions.Seconds.
const (
	MinTestSeconds     = 1
	MaxTestSeconds     = 3600
	DefaultTestSeconds = 10
)

// Check reports options out of range.
func (o TestOptions) Check() error {
	if math.IsNaN(o.Seconds) || o.Seconds < MinTestSeconds || o.Seconds > MaxTestSeconds {
		return fmt.Errorf("--seconds %v: want %d to %d", o.Seconds, MinTestSeconds, MaxTestSeconds)
	}
	return nil
}

// TestProgress is how a link test is going, sent a few times a second.
type TestProgress struct {
	Phase   string  `json:"phase"`   // rtt, upload, download, both
	Elapsed float64 `json:"elapsed"` // seconds since the test started
	Total   float64 `json:"total"`   // seconds the test will take
	// Goodput each way now, in bytes per second (0 when that direction is
	// not being measured).
	Up   float64 `json:"up"`
	Down float64 `json:"down"`
}

// RTTStats summarises echo round trips, in seconds.
type RTTStats struct {
	Samples int     `json:"samples"`
	Min     float64 `json:"min"`
	Avg     float64 `json:"avg"`
	Max     float64 `json:"max"`
}

func (r *RTTStats) add(d time.Duration) {
	s := d.Seconds()
	if r.Samples == 0 || s < r.Min {
		r.Min = s
	}
	r.Max = max(r.Max, s)
	r.Avg = (r.Avg*float64(r.Samples) + s) / float64(r.Samples+1)
	r.Samples++
}

// Direction is the figure of one direction of a link test.
type Direction struct {
	// Bytes arrived at the receiving end in Seconds, from its first read
	// to its last; Goodput is their rate in bytes per second.
	Bytes   uint64  `json:"bytes"`
	Seconds float64 `json:"seconds"`
	Goodput float64 `json:"goodput"`
}

// TestResult is what a link test measured.
type TestResult struct {
	Name      string  `json:"name"`
	Transport string  `json:"transport"`
	Line      string  `json:"line,omitempty"`
	LineRate  int     `json:"line_rate"` // the line's bytes per second each way; 0: fast or unknown
	Seconds   float64 `json:"seconds"`   // how long the test took
	Both      bool    `json:"both"`

	Upload   Direction `json:"upload"`   // from this end to the far end
	Download Direction `json:"download"` // from the far end to this end

	RTTIdle   RTTStats `json:"rtt_idle"`   // echo round trips before the transfers
	RTTLoaded RTTStats `json:"rtt_loaded"` // echo round trips during them
	LinkRTT   float64  `json:"link_rtt"`   // the link's smoothed RTT at the end

	// This end's link counters over the test: frames resent are repairs
	// of frames this end sent (lost or damaged on the way out, or their
	// acks lost on the way back); frames bad are frames from the far end
	// that arrived damaged.
	FramesOut    uint64 `json:"frames_out"`
	FramesIn     uint64 `json:"frames_in"`
	FramesResent uint64 `json:"frames_resent"`
	FramesBad    uint64 `json:"frames_bad"`
	FramesDup    uint64 `json:"frames_dup"`
	BytesOut     uint64 `json:"bytes_out"` // on the line, framing included
	BytesIn      uint64 `json:"bytes_in"`
	Resumes      uint64 `json:"resumes"`
	// The payload this end sent and received over the test, before
	// compression and as it crossed the line (the test's own bytes are
	// random: they do not compress).
	PayloadOut    uint64 `json:"payload_out"`
	CompressedOut uint64 `json:"compressed_out"`
	PayloadIn     uint64 `json:"payload_in"`
	CompressedIn  uint64 `json:"compressed_in"`
	// Preemptions are frames this end cut short for the echo round trips
	// (or other interactive data): the far end drops them as bad.
	Preemptions uint64 `json:"preemptions"`

	// FEC is the FEC stage at the end of the test, its counters over the
	// test (nil where the link offers no FEC).
	FEC *FEC `json:"fec,omitempty"`

	// Far is the far end's counters over the test, when it tells them
	// (a link with a control socket does).
	Far *forward.LinkCounters `json:"far,omitempty"`
	// The frames of each direction over the test: sent, damaged on the
	// way (frames cut short on purpose not counted) and resent. Without
	// Far, only what this end sees: the upload's resent and the
	// download's damaged frames.
	UploadFrames   Frames `json:"upload_frames"`
	DownloadFrames Frames `json:"download_frames"`
}

// Frames counts the frames of one direction.
type Frames struct {
	Sent    uint64 `json:"sent"`
	Damaged uint64 `json:"damaged"`
	Resent  uint64 `json:"resent"`
}

// LossRatio is the larger of the shares of frames damaged and resent.
func (f Frames) LossRatio() float64 { return max(ratio(f.Damaged, f.Sent), ratio(f.Resent, f.Sent)) }

// sub is a-b, or 0 when b is larger.
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// frames works out each direction's frames from both ends' counters.
func (r *TestResult) frames() {
	r.UploadFrames = Frames{Sent: r.FramesOut, Resent: r.FramesResent}
	r.DownloadFrames = Frames{Sent: r.FramesIn + r.FramesBad, Damaged: r.FramesBad}
	if f := r.Far; f != nil {
		r.UploadFrames.Damaged = sub(f.FramesBad, r.Preemptions)
		r.DownloadFrames = Frames{Sent: f.FramesOut, Damaged: sub(r.FramesBad, f.Preemptions), Resent: f.FramesResent}
	}
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// errDeadline is how a stream's deadline fails a read or write.
var errDeadline = os.ErrDeadlineExceeded

// ErrTestRunning is the answer to a test asked for while one runs.
var ErrTestRunning = errors.New("a link test is already running on this link")

// counters are the link counters a test reads before and after.
type counters struct {
	out, in, resent, bad, dup, bytesOut, bytesIn, resumes, preemptions uint64
	payloadOut, compressedOut, payloadIn, compressedIn                 uint64
	fecBlocks, fecCorrected, fecLost                                   uint64
}

func readCounters(st *link.Stats) counters {
	return counters{st.FramesOut.Load(), st.FramesIn.Load(), st.FramesResent.Load(), st.FramesBad.Load(),
		st.FramesDup.Load(), st.BytesOut.Load(), st.BytesIn.Load(), st.Resumes.Load(), st.Preemptions.Load(),
		st.PayloadOut.Load(), st.CompressedOut.Load(), st.PayloadIn.Load(), st.CompressedIn.Load(),
		st.FECBlocksIn.Load(), st.FECCorrected.Load(), st.FECUncorrectable.Load()}
}

// farCounters reads the far end's link counters, over a counters stream
// opened on first use; nil when the far end does not tell them.
type farCounters struct {
	m *mux.Mux
	s *mux.Stream
	r *bufio.Reader
}

func (f *farCounters) read(ctx context.Context) *forward.LinkCounters {
	if f.s == nil {
		octx, cancel := context.WithTimeout(ctx, openTimeout)
		s, err := forward.OpenDiag(octx, f.m, forward.DiagCounters)
		cancel()
		if err != nil {
			return nil
		}
		f.s, f.r = s, bufio.NewReader(s)
	}
	c, err := forward.ReadCounters(f.s, f.r, time.Now().Add(openTimeout))
	if err != nil {
		return nil
	}
	return &c
}

func (f *farCounters) close() {
	if f.s != nil {
		f.s.Close()
	}
}

// Timing of a test.
const (
	idlePings    = 10                     // echo round trips before the transfers, at most
	pingEvery    = 250 * time.Millisecond // echo round trips during them, at most this often
	pingLineCost = 64                     // line bytes a round trip costs each way, about
	pingShare    = 0.02                   // of a slow line the loaded round trips may take
	pingSize     = 16
	progressTick = 250 * time.Millisecond
	openTimeout  = 15 * time.Second // to open a stream and hear the service
)

// RunTest measures the link of src end to end, calling progress a few
// times a second (from one goroutine at a time). It needs the far end's
// link test service (forward.ServiceTestLink).
func RunTest(ctx context.Context, src Source, opts TestOptions, progress func(TestProgress)) (*TestResult, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	l, m := src.Link, src.Mux
	if l == nil {
		return nil, fmt.Errorf("the link test needs a sockmux peer: this end speaks DeleGate's SockMux (--wire delegate)")
	}
	if st := l.State(); st != link.StateUp {
		return nil, fmt.Errorf("the link is not up (state %s): nothing to test", st)
	}
	if !l.PeerServes(forward.ServiceTestLink) {
		return nil, fmt.Errorf("the far end does not serve the link test: its hello names no %q service (an older sockmux, or a program using sockmux as a library)", forward.ServiceTestLink)
	}
	total := time.Duration(opts.Seconds * float64(time.Second))
	res := &TestResult{Name: src.Name, Line: src.line(), LineRate: l.Properties().LineRate, Both: opts.Both}
	if src.Driver != nil {
		res.Transport = src.Driver.String()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	octx, ocancel := context.WithTimeout(ctx, openTimeout)
	echo, err := forward.OpenDiag(octx, m, forward.DiagEcho)
	ocancel()
	if err != nil {
		return nil, err
	}
	defer echo.Close()

	far := &farCounters{m: m}
	defer far.close()
	farBefore := far.read(ctx)
	before := readCounters(l.Stats())
	start := time.Now()
	var pmu sync.Mutex
	report := func(p TestProgress) {
		if progress == nil {
			return
		}
		p.Elapsed = time.Since(start).Seconds()
		p.Total = total.Seconds()
		pmu.Lock()
		progress(p)
		pmu.Unlock()
	}

	// Idle round trips: up to idlePings, for at most a tenth of the test.
	pingEnd := start.Add(total / 10)
	report(TestProgress{Phase: "rtt"})
	for i := 0; i < idlePings && time.Now().Before(pingEnd); i++ {
		d, err := ping(echo, byte(i), pingEnd.Add(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("echo round trip: %w", err)
		}
		res.RTTIdle.add(d)
	}

	// Transfers: with the echo stream pinging alongside for the loaded
	// round-trip time.
	left := total - time.Since(start)
	var phases []string
	if opts.Both {
		phases = []string{"both"}
	} else {
		phases = []string{"upload", "download"}
	}
	each := left / time.Duration(len(phases))
	for _, phase := range phases {
		end := time.Now().Add(each)
		pctx, pcancel := context.WithDeadline(ctx, end)
		var wg sync.WaitGroup
		var upErr, downErr error
		var up, down rate
		if phase != "download" {
			wg.Go(func() { upErr = upload(pctx, m, end, &up) })
		}
		if phase != "upload" {
			wg.Go(func() { downErr = download(pctx, m, end, &down) })
		}
		pings := make(chan error, 1)
		every := pingEvery
		if rate := l.Properties().LineRate; rate > 0 {
			// On a slow line, round trips (and the frames they cut short)
			// would take a share of the line the transfers should have.
			every = max(every, time.Duration(pingLineCost/(pingShare*float64(rate))*float64(time.Second)))
		}
		go func() { pings <- loadedPings(pctx, echo, end, every, &res.RTTLoaded) }()
		tick := time.NewTicker(progressTick)
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
	wait:
		for {
			select {
			case <-finished:
				break wait
			case <-tick.C:
				report(TestProgress{Phase: phase, Up: up.now(), Down: down.now()})
			}
		}
		tick.Stop()
		pcancel()
		perr := <-pings
		for _, err := range []error{upErr, downErr, perr} {
			if err != nil {
				return nil, err
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if phase != "download" {
			res.Upload = up.result()
		}
		if phase != "upload" {
			res.Download = down.result()
		}
	}

	after := readCounters(l.Stats())
	if farBefore != nil {
		if farAfter := far.read(ctx); farAfter != nil {
			d := farAfter.Sub(*farBefore)
			res.Far = &d
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.LinkRTT = l.RTT().Seconds()
	res.FramesOut = after.out - before.out
	res.FramesIn = after.in - before.in
	res.FramesResent = after.resent - before.resent
	res.FramesBad = after.bad - before.bad
	res.FramesDup = after.dup - before.dup
	res.BytesOut = after.bytesOut - before.bytesOut
	res.BytesIn = after.bytesIn - before.bytesIn
	res.Resumes = after.resumes - before.resumes
	res.Preemptions = after.preemptions - before.preemptions
	res.PayloadOut = after.payloadOut - before.payloadOut
	res.CompressedOut = after.compressedOut - before.compressedOut
	res.PayloadIn = after.payloadIn - before.payloadIn
	res.CompressedIn = after.compressedIn - before.compressedIn
	if f := fecStatus(l); f != nil {
		f.BlocksIn = after.fecBlocks - before.fecBlocks
		f.Corrected = after.fecCorrected - before.fecCorrected
		f.Uncorrectable = after.fecLost - before.fecLost
		res.FEC = f
	}
	res.frames()
	return res, nil
}

// rate follows one direction's arrivals: the first read's bytes and time,
// the total and the time of the latest, and a recent sample for progress.
type rate struct {
	mu          sync.Mutex
	r           forward.Report
	sampleAt    time.Time
	sampleBytes uint64
	current     float64
	primed      bool
}

// set records the arrivals so far; at is when they were seen here.
func (x *rate) set(r forward.Report, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.r = r
	if !x.primed {
		x.sampleAt, x.sampleBytes, x.primed = at, r.Total, true
		return
	}
	if d := at.Sub(x.sampleAt); d >= progressTick {
		x.current = float64(r.Total-x.sampleBytes) / d.Seconds()
		x.sampleAt, x.sampleBytes = at, r.Total
	}
}

func (x *rate) now() float64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.current
}

func (x *rate) result() Direction {
	x.mu.Lock()
	defer x.mu.Unlock()
	return Direction{Bytes: x.r.Total - x.r.First, Seconds: x.r.Span.Seconds(), Goodput: x.r.Rate()}
}

// openService opens a stream to the far end's diagnostic service svc,
// closed when ctx ends; done closes it.
func openService(ctx context.Context, m *mux.Mux, svc string) (*mux.Stream, func(), error) {
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	s, err := forward.OpenDiag(octx, m, svc)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	return s, func() { stop(); s.Close() }, nil
}

// upload writes to the far end's discard service until end, following its
// reports of what arrived.
func upload(ctx context.Context, m *mux.Mux, end time.Time, x *rate) error {
	s, done, err := openService(ctx, m, forward.DiagDiscard)
	if err != nil {
		return err
	}
	defer done()
	reports := make(chan error, 1)
	go func() {
		buf := make([]byte, forward.DiagReportSize)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				reports <- nil // ended by us, or broken: the writer sees it
				return
			}
			r, err := forward.ParseReport(buf)
			if err != nil {
				reports <- err
				return
			}
			x.set(r, time.Now())
		}
	}()
	buf := make([]byte, 16<<10)
	noise := uint64(0x2545f4914f6cdd1d)
	_ = s.SetWriteDeadline(end)
	var werr error
	for time.Now().Before(end) {
		// Fresh bytes each time: a compressing link must not shrink them.
		forward.DiagNoise(buf, &noise)
		if _, werr = s.Write(buf); werr != nil {
			break
		}
	}
	// Whatever is still queued is not waited for: the last report tells
	// the rate, and a reset drops the rest at once.
	s.Close()
	rerr := <-reports
	switch {
	case rerr != nil:
		return rerr
	case werr != nil && !errors.Is(werr, errDeadline) && ctx.Err() == nil:
		return fmt.Errorf("upload: %w", werr)
	}
	return nil
}

// download reads from the far end's source service until end.
func download(ctx context.Context, m *mux.Mux, end time.Time, x *rate) error {
	s, done, err := openService(ctx, m, forward.DiagSource)
	if err != nil {
		return err
	}
	defer done()
	_ = s.SetReadDeadline(end)
	buf := make([]byte, 32<<10)
	var r forward.Report
	var first time.Time
	for {
		n, err := s.Read(buf)
		if n > 0 {
			now := time.Now()
			if r.Total == 0 {
				first, r.First = now, uint64(n)
			}
			r.Total += uint64(n)
			r.Span = now.Sub(first)
			x.set(r, now)
		}
		if err != nil {
			if errors.Is(err, errDeadline) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("download: %w", err)
		}
	}
}

// ping sends one small message on the echo stream and waits for it back.
func ping(s *mux.Stream, seq byte, deadline time.Time) (time.Duration, error) {
	var out, in [pingSize]byte
	for i := range out {
		out[i] = seq + byte(i)
	}
	_ = s.SetDeadline(deadline)
	defer s.SetDeadline(time.Time{})
	t0 := time.Now()
	if _, err := s.Write(out[:]); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(s, in[:]); err != nil {
		return 0, err
	}
	if in != out {
		return 0, errors.New("the echo came back different")
	}
	return time.Since(t0), nil
}

// loadedPings measures round trips every interval until end. A round
// trip still under way at the end is waited for, up to a few seconds more,
// so that the echo stream stays in step.
func loadedPings(ctx context.Context, s *mux.Stream, end time.Time, interval time.Duration, st *RTTStats) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for seq := byte(100); ; seq++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !time.Now().Before(end) {
			return nil
		}
		d, err := ping(s, seq, end.Add(10*time.Second))
		if err != nil {
			return fmt.Errorf("echo round trip under load: %w", err)
		}
		st.add(d)
	}
}
