//go:build unix

package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// linkStatus is the part of `sockmux status --json` the tests read.
type linkStatus struct {
	Name          string  `json:"name"`
	PID           int     `json:"pid"`
	State         string  `json:"state"`
	Local         string  `json:"local_session"`
	Peer          string  `json:"peer_session"`
	Transport     string  `json:"transport"`
	UpSeconds     float64 `json:"up_seconds"`
	BytesOut      uint64  `json:"bytes_out"`
	BytesIn       uint64  `json:"bytes_in"`
	PayloadOut    uint64  `json:"payload_out"`
	PayloadIn     uint64  `json:"payload_in"`
	FramesBad     uint64  `json:"frames_bad"`
	Sessions      uint64  `json:"sessions"`
	SessionsEnded uint64  `json:"sessions_ended"`
	Streams       []struct {
		ID       uint32 `json:"id"`
		Entrance int    `json:"entrance"`
		Dest     string `json:"dest"`
		Client   string `json:"client"`
		BytesIn  uint64 `json:"bytes_in"`
		BytesOut uint64 `json:"bytes_out"`
	} `json:"streams"`
}

// status runs sockmux status --json against the control socket sock.
func status(t *testing.T, sock string) linkStatus {
	t.Helper()
	code, out := run(t, 10*time.Second, "status", "--json", "--control", sock)
	require.Equal(t, 0, code, out)
	var st linkStatus
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	return st
}

// controlDir is a short directory for control sockets (a socket's path
// must fit in about 100 bytes, which t.TempDir may exceed).
func controlDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "smx")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// holdStream connects through a forward to a transfer server, asks for
// down bytes, sends up bytes, reads the down bytes and keeps the
// connection open.
func holdStream(t *testing.T, addr string, up, down int) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[:8], uint64(down))
	binary.BigEndian.PutUint64(hdr[8:], 7)
	_, err = c.Write(hdr[:])
	require.NoError(t, err)
	_, err = io.CopyN(c, newPattern(8), int64(up))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	n, err := io.CopyN(io.Discard, c, int64(down))
	require.NoError(t, err, "read %d of %d bytes", n, down)
	return c
}

func TestOpsStatusJSONReportsTraffic(t *testing.T) {
	srv := transferServer(t)
	lport := freePort(t)
	dir := controlDir(t)
	recSock, conSock := filepath.Join(dir, "rec.sock"), filepath.Join(dir, "con.sock")
	rec, con, _ := tcpPair(t, []string{"--control", recSock},
		[]string{"--control", conSock, "--grace", "100ms", "-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv)})

	fi, err := os.Stat(conSock)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket|0o600, fi.Mode(), "the control socket is the user's alone")

	const up, down = 300 << 10, 700 << 10
	c := holdStream(t, addr(lport), up, down)

	// The stream's counters settle once the upload has crossed the link.
	var cs linkStatus
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs = status(t, conSock)
		if len(cs.Streams) == 1 && cs.Streams[0].BytesOut == 16+up || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rs := status(t, recSock)

	assert.Equal(t, "up", cs.State)
	assert.Equal(t, "up", rs.State)
	assert.Equal(t, con.cmd.Process.Pid, cs.PID)
	assert.Equal(t, cs.Local, rs.Peer, "the ends agree on the session")
	assert.Equal(t, rs.Local, cs.Peer)
	assert.Contains(t, cs.Transport, "tcp connect")
	require.Len(t, cs.Streams, 1)
	s := cs.Streams[0]
	assert.Equal(t, lport, s.Entrance)
	assert.Equal(t, addr(srv), s.Dest)
	assert.Equal(t, c.LocalAddr().String(), s.Client)
	assert.EqualValues(t, 16+up, s.BytesOut, "bytes the client sent")
	assert.EqualValues(t, down, s.BytesIn, "bytes the client received")
	require.Len(t, rs.Streams, 1)
	assert.EqualValues(t, 16+up, rs.Streams[0].BytesIn)
	assert.EqualValues(t, down, rs.Streams[0].BytesOut)

	// Link totals: the payload is the stream's bytes plus the mux's
	// headers and window updates; the line carries that plus framing.
	within := func(what string, got, want uint64) {
		t.Helper()
		assert.GreaterOrEqual(t, got, want, what)
		assert.LessOrEqual(t, got, want+want/50+4096, what)
	}
	within("connector payload out", cs.PayloadOut, 16+up)
	within("connector payload in", cs.PayloadIn, down)
	within("receptor payload out", rs.PayloadOut, down)
	within("receptor payload in", rs.PayloadIn, 16+up)
	within("connector line out", cs.BytesOut, cs.PayloadOut)
	within("connector line in", cs.BytesIn, cs.PayloadIn)
	assert.InDelta(t, cs.BytesOut, rs.BytesIn, 256, "what one end wrote the other read, but for acks in flight")
	assert.Zero(t, cs.FramesBad)

	// The text form shows the same link and the stream.
	code, out := run(t, 10*time.Second, "status", "--control", conSock)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "state      up")
	assert.Contains(t, out, "1 open streams")
	assert.Contains(t, out, addr(srv))

	// A second link may not take a live socket; the error names the owner.
	code, out = run(t, 10*time.Second, "link", "--connect", addr(freePort(t)), "--control", conSock)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, fmt.Sprintf("pid %d", con.cmd.Process.Pid))

	// The socket goes when the link stops; one left by a killed link is
	// replaced by the next.
	con.signal(syscall.SIGTERM)
	con.wait(15 * time.Second)
	_, err = os.Stat(conSock)
	assert.ErrorIs(t, err, os.ErrNotExist)
	rec.kill()
	_, err = os.Stat(recSock)
	require.NoError(t, err, "a killed link leaves its socket")
	again := start(t, "receptor again", "link", "--listen", addr(freePort(t)), "--control", recSock)
	again.waitLog("replacing a stale control socket", 10*time.Second)
	again.waitLog("control socket", 10*time.Second)
	assert.Equal(t, again.cmd.Process.Pid, status(t, recSock).PID)
}

func TestOpsStatusWatchRedraws(t *testing.T) {
	dir := controlDir(t)
	sock := filepath.Join(dir, "rec.sock")
	tcpPair(t, []string{"--control", sock}, nil)
	cmd := exec.Command(bin, "status", "--watch", "--control", sock)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer tty.Close()
	var buf bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = io.Copy(&buf, tty)
	}()
	time.Sleep(2500 * time.Millisecond)
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	tty.Close()
	<-readDone
	out := buf.String()
	assert.Equal(t, 1, strings.Count(out, "\x1b[2J"), "the screen is blanked once, at the start")
	assert.GreaterOrEqual(t, strings.Count(out, "\x1b[H"), 3, "redrawn every second from the top")
	assert.GreaterOrEqual(t, strings.Count(out, "\x1b[J"), 3, "each redraw clears below itself")
	assert.Contains(t, out, "\x1b[K", "each line clears what is left of the old one")
	assert.GreaterOrEqual(t, strings.Count(out, `sockmux link "default"`), 3, out)
	assert.Contains(t, out, "state      up")
}

// promSample is one sample line of Prometheus text exposition.
type promSample struct {
	name   string
	labels string
	value  float64
}

// parseProm checks text against the exposition format (# HELP and # TYPE
// before the samples of each metric, sample lines NAME{LABELS} VALUE)
// and returns the samples.
func parseProm(t *testing.T, text string) []promSample {
	t.Helper()
	types := map[string]string{}
	var out []promSample
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			require.Len(t, f, 2, "line %d: %q", n, line)
			require.Contains(t, []string{"counter", "gauge"}, f[1], "line %d", n)
			types[f[0]] = f[1]
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		require.NotEmpty(t, line, "line %d is empty", n)
		sp := strings.LastIndexByte(line, ' ')
		require.Positive(t, sp, "line %d: %q", n, line)
		series, val := line[:sp], line[sp+1:]
		v, err := strconv.ParseFloat(val, 64)
		require.NoError(t, err, "line %d: %q", n, line)
		name, labels := series, ""
		if i := strings.IndexByte(series, '{'); i >= 0 {
			require.True(t, strings.HasSuffix(series, "}"), "line %d: %q", n, line)
			name, labels = series[:i], series[i+1:len(series)-1]
			for _, kv := range strings.Split(labels, ",") {
				k, q, ok := strings.Cut(kv, "=")
				require.True(t, ok && len(q) >= 2 && q[0] == '"' && q[len(q)-1] == '"' && k != "", "line %d: label %q", n, kv)
			}
		}
		for i, r := range name {
			ok := r == '_' || r == ':' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9'
			require.True(t, ok, "line %d: metric name %q", n, name)
		}
		typ, declared := types[name]
		require.True(t, declared, "line %d: %s has no # TYPE", n, name)
		if typ == "counter" {
			require.True(t, strings.HasSuffix(name, "_total"), "counter %s", name)
			require.GreaterOrEqual(t, v, 0.0)
		}
		out = append(out, promSample{name, labels, v})
	}
	return out
}

func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/plain; version=0.0.4")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := map[string]float64{}
	for _, s := range parseProm(t, string(body)) {
		if s.name == "sockmux_link_state" {
			if s.value == 1 {
				m["state "+s.labels] = 1
			}
			continue
		}
		m[s.name] = s.value
	}
	return m
}

func TestOpsMetricsMoveWithTraffic(t *testing.T) {
	srv := transferServer(t)
	lport := freePort(t)
	metricsAddr := addr(freePort(t))
	dir := controlDir(t)
	tcpPair(t, nil, []string{"--control", filepath.Join(dir, "c.sock"), "--metrics", metricsAddr,
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv)})
	url := "http://" + metricsAddr + "/metrics"
	before := scrape(t, url)
	assert.Equal(t, 1.0, before["sockmux_link_up"])
	assert.Equal(t, 1.0, before[`state name="default",state="up"`])
	for _, name := range []string{"sockmux_bytes_sent_total", "sockmux_bytes_received_total", "sockmux_frames_resent_total",
		"sockmux_frames_bad_total", "sockmux_resumes_total", "sockmux_auth_failures_total", "sockmux_preemptions_total",
		"sockmux_rtt_seconds", "sockmux_uptime_seconds", "sockmux_goodput_sent_bytes_per_second"} {
		assert.Contains(t, before, name)
	}
	assert.Zero(t, before["sockmux_streams_open"])

	const up, down = 1 << 20, 2 << 20
	c := holdStream(t, addr(lport), up, down)
	during := scrape(t, url)
	assert.Equal(t, 1.0, during["sockmux_streams_open"])
	assert.GreaterOrEqual(t, during["sockmux_payload_received_total"]-before["sockmux_payload_received_total"], float64(down))
	assert.GreaterOrEqual(t, during["sockmux_bytes_received_total"]-before["sockmux_bytes_received_total"], float64(down))
	assert.Greater(t, during["sockmux_frames_received_total"], before["sockmux_frames_received_total"])
	c.Close()
	require.NoError(t, transfer(addr(lport), up, 0, 3))
	after := scrape(t, url)
	assert.GreaterOrEqual(t, after["sockmux_payload_sent_total"]-before["sockmux_payload_sent_total"], float64(2*up))
	assert.GreaterOrEqual(t, after["sockmux_bytes_sent_total"], after["sockmux_payload_sent_total"])
}

// readPID reads the pid a shell wrote to path, waiting for it.
func readPID(t *testing.T, path string, notPID int) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid != notPID {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new pid in %s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOpsExecOverStdioSurvivesChildKill(t *testing.T) {
	srv := transferServer(t)
	lport := freePort(t)
	dir := controlDir(t)
	pidFile := filepath.Join(dir, "child.pid")
	parentSock := filepath.Join(dir, "parent.sock")
	child := fmt.Sprintf("echo $$ > %s; exec %s link --stdio --control %s", pidFile, bin, filepath.Join(dir, "child.sock"))
	parent := start(t, "parent", "link", "--exec", child, "--control", parentSock,
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv))
	parent.waitLog("link up", 15*time.Second)
	pid := readPID(t, pidFile, 0)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	require.NoError(t, transfer(addr(lport), 1<<20, 1<<20, 11))
	// The child logs to its stderr, which is the parent's log.
	assert.Contains(t, parent.logText(), `msg="exec: stderr" line=`)
	assert.Contains(t, parent.logText(), "link up")
	first := status(t, parentSock)
	assert.Equal(t, "exec "+child, first.Transport)

	held := holdStream(t, addr(lport), 1000, 1000)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))

	// The stream of the killed child's session is reset ...
	require.NoError(t, held.SetReadDeadline(time.Now().Add(20*time.Second)))
	_, err := held.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	if errors.As(err, &ne) {
		assert.False(t, ne.Timeout(), "the old stream must be reset, not left hanging: %v", err)
	}
	// ... a new child runs a new session ...
	newPID := readPID(t, pidFile, pid)
	t.Cleanup(func() { _ = syscall.Kill(newPID, syscall.SIGKILL) })
	assert.Equal(t, 2, parent.countLog(`msg="exec: command started"`))
	deadline := time.Now().Add(15 * time.Second)
	var second linkStatus
	for {
		second = status(t, parentSock)
		if second.State == "up" && second.Peer != first.Peer || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	assert.Equal(t, "up", second.State)
	assert.NotEqual(t, first.Peer, second.Peer, "a new child is a new peer session")
	// ... and new streams work.
	require.NoError(t, transfer(addr(lport), 1<<20, 1<<20, 12))

	// When the parent stops, its child goes too.
	parent.signal(syscall.SIGTERM)
	parent.wait(15 * time.Second)
	deadline = time.Now().Add(5 * time.Second)
	for syscall.Kill(newPID, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.Error(t, syscall.Kill(newPID, 0), "the child outlived the parent")
}

func TestOpsStdioEndsWithItsInput(t *testing.T) {
	dir := controlDir(t)
	cmd := exec.Command(bin, "link", "--stdio", "--control", filepath.Join(dir, "s.sock"))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	require.NoError(t, cmd.Start())
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, stdin.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		t.Fatalf("sockmux link --stdio did not exit when its input ended; log:\n%s", stderr.String())
	}
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, stderr.String(), "sockmux: the link's standard input/output ended")
}

func TestOpsStdioAndExecAreTransports(t *testing.T) {
	code, out := run(t, 10*time.Second, "link", "--stdio", "--exec", "cat")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "more than one transport: [--stdio --exec]")
	code, out = run(t, 10*time.Second, "link", "--connect", "127.0.0.1:1", "--stdio")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "more than one transport: [--connect --stdio]")
	code, out = run(t, 10*time.Second, "link", "--name", "../x", "--stdio")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `--name "../x"`)
}
