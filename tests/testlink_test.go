//go:build unix

package tests

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/control"
)

// testLinkResult is the part of `sockmux test-link --json` the tests read.
type testLinkResult struct {
	LineRate int `json:"line_rate"`
	Upload   struct {
		Bytes   uint64  `json:"bytes"`
		Seconds float64 `json:"seconds"`
		Goodput float64 `json:"goodput"`
	} `json:"upload"`
	Download struct {
		Bytes   uint64  `json:"bytes"`
		Seconds float64 `json:"seconds"`
		Goodput float64 `json:"goodput"`
	} `json:"download"`
	RTTIdle struct {
		Samples int     `json:"samples"`
		Avg     float64 `json:"avg"`
	} `json:"rtt_idle"`
	RTTLoaded struct {
		Samples int `json:"samples"`
	} `json:"rtt_loaded"`
	Far *struct {
		FramesOut uint64 `json:"frames_out"`
	} `json:"far"`
	DownloadFrames struct {
		Sent    uint64 `json:"sent"`
		Damaged uint64 `json:"damaged"`
		Resent  uint64 `json:"resent"`
	} `json:"download_frames"`
	FramesOut    uint64 `json:"frames_out"`
	FramesResent uint64 `json:"frames_resent"`
	FramesBad    uint64 `json:"frames_bad"`
}

// testLinkJSON runs sockmux test-link --json against sock.
func testLinkJSON(t *testing.T, sock string, args ...string) testLinkResult {
	t.Helper()
	code, out := run(t, 2*time.Minute, append([]string{"test-link", "--json", "--control", sock}, args...)...)
	require.Equal(t, 0, code, out)
	var r testLinkResult
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	return r
}

// summaryRate reads a goodput in bytes per second from test-link's
// summary: the line "upload     10.6 KiB/s (10902 B/s, ...".
func summaryRate(t *testing.T, out, dir string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + dir + ` +\S+ \S+ \((\d+) B/s`).FindStringSubmatch(out)
	require.NotNil(t, m, "no %s goodput in:\n%s", dir, out)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// counterSample is a link's byte counters at a moment.
type counterSample struct {
	at                 time.Time
	bytesIn, payloadIn uint64
}

// sampleCounters polls the link at sock every interval until stop is
// closed.
func sampleCounters(sock string, interval time.Duration, stop <-chan struct{}) <-chan []counterSample {
	out := make(chan []counterSample, 1)
	go func() {
		var s []counterSample
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if st, err := control.Query(sock, 5*time.Second); err == nil {
				s = append(s, counterSample{time.Now(), st.BytesIn, st.PayloadIn})
			}
			select {
			case <-stop:
				out <- s
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// busyRates returns the line and payload rates a link received at over
// the sampling windows in which its line was busy (at least busy bytes
// per second), and how long those windows lasted.
func busyRates(s []counterSample, busy float64) (line, payload float64, d time.Duration) {
	var bytes, pay uint64
	for i := 1; i < len(s); i++ {
		dt := s[i].at.Sub(s[i-1].at)
		db := s[i].bytesIn - s[i-1].bytesIn
		if float64(db)/dt.Seconds() >= busy {
			bytes += db
			pay += s[i].payloadIn - s[i-1].payloadIn
			d += dt
		}
	}
	if d == 0 {
		return 0, 0, 0
	}
	return float64(bytes) / d.Seconds(), float64(pay) / d.Seconds(), d
}

// cableRate is the rate of the cable's busiest seconds in one direction
// ("A→B" or "B→A"), from its once-a-second reports: the median of the
// seconds that carried at least half the nominal rate.
func cableRate(t *testing.T, log, dir string, nominal float64) float64 {
	t.Helper()
	re := regexp.MustCompile(`cable stats: A→B (\d+) bytes in, \d+ out; B→A (\d+) bytes in`)
	col := 1
	if dir == "B→A" {
		col = 2
	}
	var prev int64 = -1
	var busy []float64
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.ParseInt(m[col], 10, 64)
		if prev >= 0 && float64(n-prev) >= nominal/2 {
			busy = append(busy, float64(n-prev))
		}
		prev = n
	}
	require.GreaterOrEqual(t, len(busy), 2, "busy seconds %s in the cable's reports:\n%s", dir, log)
	slices.Sort(busy)
	return busy[len(busy)/2]
}

// TestTestLinkOverCable: test-link over a virtual cable reports goodput
// each way within 10 % of what the cable really carried as payload while
// the test kept it busy: the cable's rate (its own reports, and the
// receiving link's byte counters) times the share of payload in the bytes
// the receiving link read.
func TestTestLinkOverCable(t *testing.T) {
	const baud = 115200
	nominal := float64(baud) / 10
	cable, pathA, pathB := startCable(t, "--baud", strconv.Itoa(baud))
	dir := controlDir(t)
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	a := start(t, "link A", "link", "--comm", pathA, "--baud", strconv.Itoa(baud), "--control", sockA)
	b := start(t, "link B", "link", "--comm", pathB, "--baud", strconv.Itoa(baud), "--control", sockB)
	a.waitLog("link up", 15*time.Second)
	b.waitLog("link up", 15*time.Second)

	stop := make(chan struct{})
	atB := sampleCounters(sockB, 250*time.Millisecond, stop) // the upload arrives at B
	atA := sampleCounters(sockA, 250*time.Millisecond, stop) // the download at A
	code, out := run(t, time.Minute, "test-link", "--control", sockA, "--seconds", "8")
	close(stop)
	samplesB, samplesA := <-atB, <-atA
	require.Equal(t, 0, code, out)
	t.Logf("sockmux test-link:\n%s", out)

	assert.Contains(t, out, "test-link:", "plain progress lines when stdout is not a terminal")
	assert.NotContains(t, out, "\r", "no bar redrawn in place when stdout is not a terminal")
	assert.Contains(t, out, "verdict    clean", out)
	assert.Regexp(t, `rtt idle +\S+ \(min \S+, max \S+; 10 round trips\)`, out)

	for _, c := range []struct {
		dir, cableDir string
		samples       []counterSample
	}{{"upload", "A→B", samplesB}, {"download", "B→A", samplesA}} {
		got := summaryRate(t, out, c.dir)
		cab := cableRate(t, cable.logText(), c.cableDir, nominal)
		line, payload, busyFor := busyRates(c.samples, 0.8*nominal)
		require.Greater(t, busyFor, time.Second, "%s: the line was busy for a while", c.dir)
		eff := payload / line
		want := cab * eff
		t.Logf("%s: test-link %.0f B/s; cable %.0f B/s (nominal %.0f), receiver read %.0f B/s of which payload %.0f B/s (%.1f %%) over %v busy; expected %.0f B/s",
			c.dir, got, cab, nominal, line, payload, 100*eff, busyFor, want)
		assert.InEpsilon(t, nominal, cab, 0.05, "%s: the cable runs at its baud rate", c.cableDir)
		assert.InEpsilon(t, cab, line, 0.10, "%s: the receiver reads what the cable carries", c.dir)
		assert.InEpsilon(t, want, got, 0.10, "%s goodput against the cable's real payload rate", c.dir)
		assert.InEpsilon(t, payload, got, 0.10, "%s goodput against the receiver's payload counter", c.dir)
		assert.Less(t, got, cab, "%s: no more than the cable carries", c.dir)
	}
}

// TestTestLinkOverTCP: over TCP, with a far end whose rules send every
// stream to a proxy and whose --allow admits nothing near: the test
// service is served anyway, both modes work, and the JSON is complete.
func TestTestLinkOverTCP(t *testing.T) {
	dir := controlDir(t)
	sock := filepath.Join(dir, "con.sock")
	tcpPair(t, []string{"--server", "socks", "--allow", "192.0.2.1:9"}, []string{"--control", sock})

	r := testLinkJSON(t, sock, "--seconds", "2")
	assert.Zero(t, r.LineRate, "TCP has no line rate")
	assert.Greater(t, r.Upload.Goodput, 1e6, "upload over loopback")
	assert.Greater(t, r.Download.Goodput, 1e6, "download over loopback")
	assert.Greater(t, r.Upload.Seconds, 0.3)
	assert.Greater(t, r.Download.Seconds, 0.3)
	assert.Equal(t, 10, r.RTTIdle.Samples)
	assert.Positive(t, r.RTTIdle.Avg)
	assert.Positive(t, r.RTTLoaded.Samples)
	assert.Positive(t, r.FramesOut)
	assert.Zero(t, r.FramesResent)
	assert.Zero(t, r.FramesBad)
	require.NotNil(t, r.Far, "the far end tells its link counters")
	assert.Positive(t, r.Far.FramesOut)
	assert.Equal(t, r.Far.FramesOut, r.DownloadFrames.Sent)
	assert.Zero(t, r.DownloadFrames.Damaged+r.DownloadFrames.Resent)

	both := testLinkJSON(t, sock, "--seconds", "2", "--both")
	assert.Greater(t, both.Upload.Goodput, 1e6)
	assert.Greater(t, both.Download.Goodput, 1e6)
	assert.Greater(t, both.Upload.Seconds, 1.0, "both directions run for the whole test")

	// The link is fine for other traffic afterwards, and reports no test
	// stream left open.
	st := status(t, sock)
	assert.Equal(t, "up", st.State)
	assert.Empty(t, st.Streams)

	// Status tells the process's goroutines and resident memory.
	full, err := control.Query(sock, 5*time.Second)
	require.NoError(t, err)
	assert.Positive(t, full.Goroutines)
	if runtime.GOOS == "linux" {
		assert.Greater(t, full.RSSBytes, uint64(1<<20))
		assert.False(t, full.RSSPeak)
	}
	code, out := run(t, 10*time.Second, "status", "--control", sock)
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `(?m)^process    \d+ goroutines, \S+ (KiB|MiB) resident`, out)
}

// TestTestLinkProgressBarOnATerminal: on a terminal the progress bar is
// redrawn in place and cleared before the summary.
func TestTestLinkProgressBarOnATerminal(t *testing.T) {
	dir := controlDir(t)
	sock := filepath.Join(dir, "con.sock")
	tcpPair(t, nil, []string{"--control", sock})
	cmd := exec.Command(bin, "test-link", "--control", sock, "--seconds", "2")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer tty.Close()
	var mu sync.Mutex
	var buf bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		b := make([]byte, 4096)
		for {
			n, err := tty.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("test-link did not finish")
	}
	select {
	case <-readDone:
	case <-time.After(2 * time.Second):
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	assert.Regexp(t, `\r\[#*\.*\] +\d+%`, out, "a bar redrawn in place")
	assert.Contains(t, out, "\r\x1b[K", "the bar is cleared before the summary")
	assert.NotContains(t, out, "test-link:", "no plain progress lines on a terminal")
	assert.Contains(t, out, "verdict")
}

// TestTestLinkErrors: bad input and a missing or down link are one-line
// errors, and a second test while one runs is refused.
func TestTestLinkErrors(t *testing.T) {
	dir := controlDir(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--seconds", "0"}, "--seconds 0: want 1 to 3600"},
		{[]string{"--seconds", "1e9"}, "want 1 to 3600"},
		{[]string{"--seconds", "NaN"}, "want 1 to 3600"},
		{[]string{"--name", "../x"}, "--name"},
		{[]string{"--control", filepath.Join(dir, "none.sock")}, "no link at"},
		{[]string{"--control", filepath.Join(dir, "none.sock"), "extra"}, `unexpected argument "extra"`},
	} {
		args := append([]string{"test-link"}, c.args...)
		code, out := run(t, 20*time.Second, args...)
		oneLineError(t, code, out, c.want, args)
	}

	// A link whose far end is not there: not up, nothing to test.
	sock := filepath.Join(dir, "alone.sock")
	alone := start(t, "alone", "link", "--connect", addr(freePort(t)), "--control", sock)
	alone.waitLog("control socket", 10*time.Second)
	args := []string{"test-link", "--control", sock, "--seconds", "1"}
	code, out := run(t, 20*time.Second, args...)
	oneLineError(t, code, out, "the link is not up", args)

	// One test at a time.
	sock2 := filepath.Join(dir, "con.sock")
	tcpPair(t, nil, []string{"--control", sock2})
	first := start(t, "first test", "test-link", "--control", sock2, "--seconds", "4")
	first.waitLog("test-link:", 10*time.Second)
	args = []string{"test-link", "--control", sock2, "--seconds", "1"}
	code, out = run(t, 20*time.Second, args...)
	oneLineError(t, code, out, "already running", args)
	assert.Equal(t, 0, first.wait(30*time.Second), first.logText())
	assert.Contains(t, first.logText(), "verdict")
}
