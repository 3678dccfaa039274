package control

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/tcpdriver"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// end is one end of an in-process link over loopback TCP.
type end struct {
	l   *link.Link
	m   *mux.Mux
	drv link.Driver
}

// newEnd runs an endpoint over drv: a whole sockmux end, whose forwarder
// serves the far end's streams (the link test's among them).
func newEnd(t *testing.T, ctx context.Context, drv link.Driver) *end {
	return runEnd(t, ctx, endpoint.Options{Driver: drv, Logger: quiet()})
}

func runEnd(t *testing.T, ctx context.Context, opts endpoint.Options) *end {
	e, err := endpoint.New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &end{e.Link, e.Mux, opts.Driver}
}

// newBareEnd runs an endpoint over drv that leaves the far end's streams
// to the test: a fake far end.
func newBareEnd(t *testing.T, ctx context.Context, drv link.Driver) *end {
	return runEnd(t, ctx, endpoint.Options{Driver: drv, AcceptStreams: true, Logger: quiet()})
}

// pair runs two ends and waits until both are up.
func pair(t *testing.T) (a, b *end) { return pairWith(t, newEnd) }

// pairWithBare is pair whose far end b is a bare link and mux.
func pairWithBare(t *testing.T) (a, b *end) { return pairWith(t, newBareEnd) }

func pairWith(t *testing.T, far func(*testing.T, context.Context, link.Driver) *end) (a, b *end) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := tcpdriver.Listen("127.0.0.1:0", tcpdriver.ListenOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	a = newEnd(t, ctx, r)
	b = far(t, ctx, &tcpdriver.Connector{Addr: r.Addr().String()})
	require.Eventually(t, func() bool {
		return a.l.State() == link.StateUp && b.l.State() == link.StateUp
	}, 10*time.Second, 10*time.Millisecond)
	return a, b
}

func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "smxc")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestSnapshotCountsAStream(t *testing.T) {
	a, b := pairWithBare(t) // b takes the stream itself
	col := NewCollector(Source{Name: "t", Version: "v", Line: "9600 baud 8N1, flow none", Link: a.l, Mux: a.m, Driver: a.drv}, 42)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := a.m.Open(ctx, mux.Info{Network: "tcp", Dest: "db:5432", Entrance: 7000, Client: "127.0.0.1:1234"})
	require.NoError(t, err)
	peer, err := b.m.AcceptStream(ctx)
	require.NoError(t, err)
	peer.Accept()
	const n = 100 << 10
	go func() { _, _ = s.Write(make([]byte, n)) }()
	_, err = io.CopyN(io.Discard, peer, n)
	require.NoError(t, err)
	_, err = peer.Write([]byte("hello"))
	require.NoError(t, err)
	_, err = io.ReadFull(s, make([]byte, 5))
	require.NoError(t, err)

	st := col.Snapshot()
	local, remote := a.l.Session()
	assert.Equal(t, "up", st.State)
	assert.Equal(t, 42, st.PID)
	assert.Equal(t, strconv.FormatUint(local, 16), strings.TrimLeft(st.Local, "0"))
	assert.Equal(t, strconv.FormatUint(remote, 16), strings.TrimLeft(st.Peer, "0"))
	assert.Equal(t, a.drv.String(), st.Transport)
	assert.GreaterOrEqual(t, st.PayloadOut, uint64(n))
	assert.GreaterOrEqual(t, st.PayloadIn, uint64(5))
	assert.GreaterOrEqual(t, st.CompressedOut, st.PayloadOut, "TCP: not compressed by default")
	// Payload is counted as it is framed and bytes once the driver took
	// them, so the frames still being written catch up a moment later.
	assert.Eventually(t, func() bool {
		st := col.Snapshot()
		return st.BytesOut >= st.CompressedOut
	}, 5*time.Second, 5*time.Millisecond, "%s", a.l.Stats())
	require.Len(t, st.Streams, 1)
	ss := st.Streams[0]
	assert.Equal(t, s.ID(), ss.ID)
	assert.Equal(t, "db:5432", ss.Dest)
	assert.Equal(t, 7000, ss.Entrance)
	assert.EqualValues(t, n, ss.BytesOut)
	assert.EqualValues(t, 5, ss.BytesIn)
	assert.False(t, ss.Inbound)

	// Goodput is the payload of the last sampling interval.
	col.interval = 50 * time.Millisecond
	col.Tick()
	go func() { _, _ = s.Write(make([]byte, n)) }()
	_, err = io.CopyN(io.Discard, peer, n)
	require.NoError(t, err)
	time.Sleep(60 * time.Millisecond)
	st = col.Snapshot()
	assert.Positive(t, st.GoodputOut)
	assert.Positive(t, st.UpSeconds)

	var text strings.Builder
	require.NoError(t, Render(&text, &st))
	for _, want := range []string{`sockmux link "t"`, "state      up", "line       9600 baud 8N1", "1 open streams", "db:5432", "7000/tcp", "200.0 KiB"} {
		assert.Contains(t, text.String(), want)
	}
}

func TestFrameRedrawsInPlace(t *testing.T) {
	f := Frame("one\ntwo\n")
	assert.Equal(t, "\x1b[Hone\x1b[K\ntwo\x1b[K\n\x1b[J", f)
	assert.NotContains(t, f, "\x1b[2J")
}

func TestServerAnswersAndGuardsItsSocket(t *testing.T) {
	a, _ := pair(t)
	col := NewCollector(Source{Name: "srv", Link: a.l, Mux: a.m, Driver: a.drv}, os.Getpid())
	path := filepath.Join(shortDir(t), "x.sock")
	srv, err := Listen(path, col, quiet())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ctx)
	}()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	st, err := Query(path, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "srv", st.Name)
	assert.Equal(t, "up", st.State)

	// One connection, several requests; an unknown one is an error.
	cl, err := Dial(path, time.Second)
	require.NoError(t, err)
	for range 3 {
		_, err := cl.Status(time.Second)
		require.NoError(t, err)
	}
	cl.Close()
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	_, err = c.Write([]byte(`{"cmd":"reboot"}` + "\n"))
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Contains(t, line, `"error":"unknown command \"reboot\""`)
	c.Close()

	// A live socket is not taken over.
	_, err = Listen(path, col, quiet())
	var inUse *ErrInUse
	require.ErrorAs(t, err, &inUse)
	assert.Equal(t, os.Getpid(), inUse.PID)
	assert.Contains(t, err.Error(), "pid "+strconv.Itoa(os.Getpid()))

	cancel()
	<-served
	_, err = os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist, "the socket is removed when the server stops")
	_, err = Query(path, time.Second)
	assert.ErrorContains(t, err, "no link at")
}

func TestListenReplacesStaleSocketOnly(t *testing.T) {
	a, _ := pair(t)
	col := NewCollector(Source{Link: a.l, Mux: a.m, Driver: a.drv}, 1)
	dir := shortDir(t)

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	require.NoError(t, err)
	ln.SetUnlinkOnClose(false)
	ln.Close() // as if its process had been killed
	srv, err := Listen(stale, col, quiet())
	require.NoError(t, err)
	srv.Close()

	plain := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(plain, []byte("keep me"), 0o600))
	_, err = Listen(plain, col, quiet())
	assert.ErrorContains(t, err, "not a socket")
	data, err := os.ReadFile(plain)
	require.NoError(t, err)
	assert.Equal(t, "keep me", string(data))
}

func TestSocketPath(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	dir := "/run/user/1000/sockmux"
	if runtime.GOOS == "windows" {
		dir = filepath.ToSlash(filepath.Join(os.TempDir(), "sockmux")) // XDG_RUNTIME_DIR is not looked at
	}
	p, err := SocketPath("")
	require.NoError(t, err)
	assert.Equal(t, dir+"/default.sock", filepath.ToSlash(p))
	p, err = SocketPath("lab-3")
	require.NoError(t, err)
	assert.Equal(t, dir+"/lab-3.sock", filepath.ToSlash(p))
	_, err = SocketPath("../etc/x")
	assert.Error(t, err)
	t.Setenv("XDG_RUNTIME_DIR", "")
	p, err = SocketPath("b")
	require.NoError(t, err)
	if runtime.GOOS == "windows" {
		assert.Equal(t, filepath.Join(os.TempDir(), "sockmux", "b.sock"), p)
	} else {
		assert.Equal(t, fmt.Sprintf("/tmp/sockmux-%d/b.sock", os.Getuid()), p)
	}
}

// The directory of control sockets on each system, and the help text that
// describes it, come from the same socketDir.
func TestSocketDirPerPlatform(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	xdg := env(map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"})
	none := env(nil)
	assert.Equal(t, "/run/user/1000/sockmux", socketDir("linux", xdg, "/var/tmp", "1000"))
	assert.Equal(t, "/tmp/sockmux-1000", socketDir("linux", none, "/var/tmp", "1000"))
	assert.Equal(t, "/tmp/sockmux-501", socketDir("darwin", none, "/var/folders/x/T", "501"))
	winTemp := `C:\Users\me\AppData\Local\Temp`
	assert.Equal(t, winTemp+`\sockmux`, socketDir("windows", none, winTemp, "-1"))
	assert.Equal(t, winTemp+`\sockmux`, socketDir("windows", xdg, winTemp+`\`, "-1"),
		"Windows ignores XDG_RUNTIME_DIR, so that every shell finds the same socket")

	assert.Equal(t, "$XDG_RUNTIME_DIR/sockmux/NAME.sock, or /tmp/sockmux-UID/NAME.sock when $XDG_RUNTIME_DIR is unset",
		DefaultSocketHelp("linux"))
	assert.Equal(t, DefaultSocketHelp("linux"), DefaultSocketHelp("freebsd"))
	assert.Equal(t, `%TEMP%\sockmux\NAME.sock`, DefaultSocketHelp("windows"))
}

func TestMetricsExposition(t *testing.T) {
	a, _ := pair(t)
	col := NewCollector(Source{Name: `we"ird`, Link: a.l, Mux: a.m, Driver: a.drv}, 1)
	srv := httptest.NewServer(MetricsHandler(col))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	text := string(body)
	assert.Contains(t, text, "# TYPE sockmux_link_up gauge\nsockmux_link_up{name=\"we\\\"ird\"} 1\n")
	assert.Contains(t, text, "# TYPE sockmux_bytes_sent_total counter\n")
	assert.Contains(t, text, `sockmux_link_state{name="we\"ird",state="up"} 1`)
	assert.Contains(t, text, "sockmux_streams_open{name=\"we\\\"ird\"} 0\n")
	resp2, err := http.Get(srv.URL + "/nothing")
	require.NoError(t, err)
	resp2.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp2.StatusCode)
}

// deviceDriver is a driver that reports a device node, as serialport's
// does.
type deviceDriver struct {
	link.Driver
	dev string
}

func (d deviceDriver) Device() string { return d.dev }

func TestRunningListsLinksWithTheirDevice(t *testing.T) {
	a, b := pair(t)
	dir := shortDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serve := func(name string, drv link.Driver, l *link.Link, m *mux.Mux) {
		col := NewCollector(Source{Name: name, Link: l, Mux: m, Driver: drv}, os.Getpid())
		srv, err := Listen(filepath.Join(dir, name+".sock"), col, quiet())
		require.NoError(t, err)
		go srv.Serve(ctx)
	}
	serve("lab", deviceDriver{a.drv, "/dev/ttyUSB1"}, a.l, a.m)
	serve("net", b.drv, b.l, b.m)
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "gone.sock"), Net: "unix"})
	require.NoError(t, err)
	stale.SetUnlinkOnClose(false)
	stale.Close()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o600))

	got := Running(dir, 2*time.Second)
	require.Len(t, got, 2, "the stale socket and the other file are skipped")
	assert.Equal(t, "lab", got[0].Name)
	assert.Equal(t, "/dev/ttyUSB1", got[0].Device)
	assert.Equal(t, "net", got[1].Name)
	assert.Empty(t, got[1].Device)

	var out strings.Builder
	require.NoError(t, Render(&out, &got[0]))
	assert.Contains(t, out.String(), "(device /dev/ttyUSB1)\n")
	assert.Empty(t, Running(filepath.Join(dir, "missing"), time.Second))
}

func TestCompressionShowsTheRatioEachWay(t *testing.T) {
	assert.Equal(t, "out 4.00x (8192 B to 2048 B), in -", compression(8192, 2048, 0, 0))
	s := &Status{State: "up", PayloadOut: 3000, CompressedOut: 1000, PayloadIn: 500, CompressedIn: 500}
	var text strings.Builder
	require.NoError(t, Render(&text, s))
	assert.Contains(t, text.String(), "compressed out 3.00x (3000 B to 1000 B), in 1.00x (500 B to 500 B)")
	text.Reset()
	require.NoError(t, WriteMetrics(&text, s))
	assert.Contains(t, text.String(), "sockmux_payload_compressed_sent_total")
}
