package control

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

func TestRunTestMeasuresBothWays(t *testing.T) {
	a, b := pair(t)
	var mu sync.Mutex
	var phases []string
	res, err := RunTest(context.Background(), Source{Name: "t", Link: a.l, Mux: a.m, Driver: a.drv},
		TestOptions{Seconds: 1}, func(p TestProgress) {
			mu.Lock()
			defer mu.Unlock()
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
			assert.LessOrEqual(t, p.Elapsed, p.Total+1)
		})
	require.NoError(t, err)
	assert.Equal(t, []string{"rtt", "upload", "download"}, phases)
	assert.Greater(t, res.Upload.Goodput, 1e5)
	assert.Greater(t, res.Download.Goodput, 1e5)
	assert.Positive(t, res.Upload.Bytes)
	assert.Positive(t, res.Download.Bytes)
	assert.Equal(t, 10, res.RTTIdle.Samples)
	assert.LessOrEqual(t, res.RTTIdle.Min, res.RTTIdle.Avg)
	assert.LessOrEqual(t, res.RTTIdle.Avg, res.RTTIdle.Max)
	assert.Positive(t, res.FramesOut)
	assert.Zero(t, res.FramesResent)
	require.NotNil(t, res.Far, "the far end tells its counters")
	assert.Positive(t, res.Far.FramesOut)
	assert.Equal(t, res.Far.FramesOut, res.DownloadFrames.Sent)
	assert.Equal(t, res.FramesOut, res.UploadFrames.Sent)
	assert.Zero(t, res.UploadFrames.Damaged+res.DownloadFrames.Damaged+res.DownloadFrames.Resent)
	assert.InDelta(t, 1, res.Seconds, 0.5)
	assert.Equal(t, "clean: no frame lost or damaged", Verdict(res))

	var out strings.Builder
	require.NoError(t, RenderTest(&out, res))
	for _, want := range []string{"upload ", "download ", "rtt idle ", "rtt loaded ", " frames, 0 damaged (0.00%), 0 resent (0.00%)", "verdict "} {
		assert.Contains(t, out.String(), want)
	}
	// The test's streams are gone at both ends.
	require.Eventually(t, func() bool { return a.m.NumStreams() == 0 && b.m.NumStreams() == 0 }, 5*time.Second, 10*time.Millisecond)
}

func TestRunTestNeedsTheService(t *testing.T) {
	// A far end that names the service in its hello but answers its
	// streams with something else.
	a, b := pairWith(t, func(t *testing.T, ctx context.Context, drv link.Driver) *end {
		return runEnd(t, ctx, endpoint.Options{Driver: drv, AcceptStreams: true, Logger: quiet(),
			Link: link.Config{Services: []string{forward.ServiceTestLink}}})
	})
	go func() {
		for {
			s, err := b.m.AcceptStream(context.Background())
			if err != nil {
				return
			}
			s.Accept()
			_, _ = io.WriteString(s, "SSH-2.0-OpenSSH_9.6\r\n")
		}
	}()
	_, err := RunTest(context.Background(), Source{Link: a.l, Mux: a.m, Driver: a.drv}, TestOptions{Seconds: 1}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "names the link test service but does not serve it")

	_, err = RunTest(context.Background(), Source{Link: a.l, Mux: a.m, Driver: a.drv}, TestOptions{Seconds: 0.5}, nil)
	assert.ErrorContains(t, err, "want 1 to 3600")
}

func TestRunTestNamesAFarEndWithoutTheService(t *testing.T) {
	// A library end (or an older sockmux) names no services: the test
	// says so before it opens a stream.
	a, b := pairWithBare(t)
	assert.Empty(t, a.l.PeerServices())
	assert.Equal(t, forward.Services(), b.l.PeerServices(), "a forwarding end names its services")
	_, err := RunTest(context.Background(), Source{Link: a.l, Mux: a.m, Driver: a.drv}, TestOptions{Seconds: 1}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `the far end does not serve the link test: its hello names no "test-link" service`)
	assert.Zero(t, a.m.NumStreams(), "no stream was opened")
}

func TestDiagServiceRefusesUnknownServices(t *testing.T) {
	a, _ := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := a.m.Open(ctx, mux.Info{Service: forward.ServiceTestLink, Dest: "chargen"})
	require.NoError(t, err)
	err = s.WaitAccepted(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `no link test service "chargen"`)

	s, err = a.m.Open(ctx, mux.Info{Service: "telnet"})
	require.NoError(t, err)
	err = s.WaitAccepted(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `this end serves no service "telnet"`)
}

func TestServerRunsOneTestAtATime(t *testing.T) {
	a, _ := pair(t)
	col := NewCollector(Source{Name: "t", Link: a.l, Mux: a.m, Driver: a.drv}, 1)
	path := filepath.Join(shortDir(t), "t.sock")
	srv, err := Listen(path, col, quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served })

	cl, err := Dial(path, time.Second)
	require.NoError(t, err)
	defer cl.Close()
	started := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	var res *TestResult
	go func() {
		var err error
		res, err = cl.TestLink(TestOptions{Seconds: 2, Both: true}, func(TestProgress) { once.Do(func() { close(started) }) })
		done <- err
	}()
	<-started
	cl2, err := Dial(path, time.Second)
	require.NoError(t, err)
	defer cl2.Close()
	_, err = cl2.TestLink(TestOptions{Seconds: 1}, nil)
	assert.ErrorContains(t, err, "already running")
	// The second connection still answers status requests meanwhile.
	st, err := cl2.Status(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, "up", st.State)
	assert.Positive(t, st.Goroutines)

	require.NoError(t, <-done)
	assert.True(t, res.Both)
	assert.Greater(t, res.Upload.Seconds, 1.0)
	assert.Greater(t, res.Download.Seconds, 1.0)

	_, err = cl.TestLink(TestOptions{Seconds: 0}, nil)
	assert.ErrorContains(t, err, "want 1 to 3600")
}

func TestFramesEachWay(t *testing.T) {
	// Frames this end cut short arrive damaged at the far end, and the far
	// end's at this end: neither is damage.
	r := &TestResult{FramesOut: 100, FramesIn: 90, FramesBad: 7, FramesResent: 2, Preemptions: 3,
		Far: &forward.LinkCounters{FramesOut: 97, FramesBad: 4, FramesResent: 1, Preemptions: 5}}
	r.frames()
	assert.Equal(t, Frames{Sent: 100, Damaged: 1, Resent: 2}, r.UploadFrames)
	assert.Equal(t, Frames{Sent: 97, Damaged: 2, Resent: 1}, r.DownloadFrames)
	assert.InDelta(t, 0.0206, r.DownloadFrames.LossRatio(), 1e-3)
	assert.Contains(t, Verdict(r), "lost or damaged")

	r = &TestResult{FramesOut: 100, FramesIn: 100, FramesBad: 1, Far: &forward.LinkCounters{FramesOut: 101, Preemptions: 1}}
	r.frames()
	assert.Equal(t, "clean: no frame lost or damaged", Verdict(r), "a frame cut short is no damage")

	r = &TestResult{FramesOut: 100, FramesIn: 90, FramesBad: 3}
	r.frames()
	assert.Equal(t, Frames{Sent: 93, Damaged: 3}, r.DownloadFrames, "without the far end's counters")
	var b strings.Builder
	require.NoError(t, RenderTest(&b, r))
	assert.Contains(t, b.String(), "the far end did not tell its counters")
}

func TestReportRoundTrip(t *testing.T) {
	r := forward.Report{Total: 1000, First: 100, Span: 2 * time.Second}
	got, err := forward.ParseReport(r.Marshal())
	require.NoError(t, err)
	assert.Equal(t, r, got)
	assert.InDelta(t, 450, got.Rate(), 1e-9)
	_, err = forward.ParseReport(make([]byte, 5))
	assert.Error(t, err)
	bad := forward.Report{Total: 1, First: 2}.Marshal()
	_, err = forward.ParseReport(bad)
	assert.Error(t, err)
}

func TestRenderShowsAnyStateAndTheProcess(t *testing.T) {
	for _, state := range []string{"up", "resuming", "authenticating", "someday"} {
		s := &Status{Name: "t", State: state, Goroutines: 42, RSSBytes: 20 << 20, Streams: []Stream{}}
		var b strings.Builder
		require.NoError(t, Render(&b, s))
		assert.Contains(t, b.String(), "state      "+state)
		assert.Contains(t, b.String(), "process    42 goroutines, 20.0 MiB resident")
		b.Reset()
		require.NoError(t, WriteMetrics(&b, s))
		assert.Contains(t, b.String(), `sockmux_link_state{name="t",state="`+state+`"} 1`)
		ones := 0
		for line := range strings.Lines(b.String()) {
			if strings.HasPrefix(line, "sockmux_link_state{") && strings.HasSuffix(line, " 1\n") {
				ones++
			}
		}
		assert.Equal(t, 1, ones, "one state is 1: %s", b.String())
		assert.Contains(t, b.String(), `sockmux_goroutines{name="t"} 42`)
		assert.Contains(t, b.String(), `sockmux_resident_memory_bytes{name="t"} 2.097152e+07`)
	}
	s := &Status{State: "up", RSSBytes: 0, Streams: []Stream{}}
	var b strings.Builder
	require.NoError(t, Render(&b, s))
	assert.Contains(t, b.String(), "goroutines, - resident")
}
