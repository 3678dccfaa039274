package hub

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/internal/memline"
	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/link"
)

// line is a memline end as a driver: an unreliable serial-like line.
type line struct{ *memline.End }

func (line) Properties() link.Properties { return link.Properties{Reliable: false} }

// farEnd runs a plain end (no name, no key) on side 1 of c.
func farEnd(t *testing.T, c *memline.Cable) *endpoint.Endpoint {
	t.Helper()
	ep, err := endpoint.New(endpoint.Options{Driver: line{c.End(1)}, Link: link.Config{HandshakeTimeout: 3 * time.Second},
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ep.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ep
}

// portHub is a hub without a listener, running.
func portHub(t *testing.T) (*Hub, *testutil.LogBuffer) {
	t.Helper()
	logs := &testutil.LogBuffer{}
	h, err := New(Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h, logs
}

func attachment(name, path string, c *memline.Cable) Attachment {
	return Attachment{Name: name, Path: path, Options: endpoint.Options{Driver: line{c.End(0)}, Link: link.Config{HandshakeTimeout: 3 * time.Second}}}
}

// Attached members are peers like the peers file's: each has its own
// link to a plain far end, reached by name both ways, and one cut
// leaves the other up; names and paths are unique; Start runs beside
// each.
func TestHubAttachedMembers(t *testing.T) {
	echo := testutil.ServeLoopback(t, testutil.Echo)
	dest := echo.Addr().String()
	h, _ := portHub(t)
	started := make(chan string, 2)
	cables := map[string]*memline.Cable{"ttyA": memline.New(1), "ttyB": memline.New(2)}
	fars := map[string]*endpoint.Endpoint{}
	for _, name := range []string{"ttyA", "ttyB"} {
		a := attachment(name, "/dev/"+name, cables[name])
		a.Start = func(ctx context.Context, ep *endpoint.Endpoint) { started <- name }
		ep, err := h.Attach(a)
		require.NoError(t, err)
		require.NotNil(t, ep)
		fars[name] = farEnd(t, cables[name])
	}
	got := []string{<-started, <-started}
	assert.ElementsMatch(t, []string{"ttyA", "ttyB"}, got)

	_, err := h.Attach(attachment("TTYA", "/dev/other", memline.New(3)))
	assert.ErrorContains(t, err, "has a peer called TTYA already")
	_, err = h.Attach(attachment("other", "/dev/ttyB", memline.New(3)))
	assert.ErrorContains(t, err, "/dev/ttyB is attached already, as peer ttyB")
	_, err = h.Attach(attachment("bad name", "/dev/x", memline.New(3)))
	assert.ErrorContains(t, err, "peer name")
	assert.Equal(t, "ttya-2", h.FreeName("ttya"))
	assert.Equal(t, "fresh", h.FreeName("fresh"))

	ms := h.Peers()
	require.Len(t, ms, 2)
	assert.Equal(t, "ttyA", ms[0].Peer.Name)
	assert.True(t, ms[0].Attached())
	assert.Equal(t, "/dev/ttyA", ms[0].Path)
	assert.Nil(t, h.Addr())
	for name, far := range fars {
		m, ok := h.Peer(strings.ToLower(name))
		require.True(t, ok)
		up(t, m.Endpoint.Link)
		up(t, far.Link)
		echoThrough(t, m.Endpoint.Mux, dest, "hub to "+name)
		echoThrough(t, far.Mux, dest, name+" to hub")
	}
	// A cut of A's line: A's link resumes, B's never noticed.
	b, _ := h.Peer("ttyB")
	before := b.Endpoint.Link.Stats().TransportOpens.Load()
	cables["ttyA"].Cut()
	a, _ := h.Peer("ttyA")
	up(t, a.Endpoint.Link)
	echoThrough(t, a.Endpoint.Mux, dest, "A again")
	echoThrough(t, b.Endpoint.Mux, dest, "B throughout")
	assert.Equal(t, before, b.Endpoint.Link.Stats().TransportOpens.Load())
	assert.Contains(t, h.NoPeer("nobody"), `no peer "nobody" on the hub (its peers: ttyA, ttyB)`)
}

func TestPortName(t *testing.T) {
	long := "/dev/serial/by-id/usb-Silicon_Labs_CP2102_USB_to_UART_Bridge_Controller_0001-if00-port0"
	for path, want := range map[string]string{
		"/dev/ttyUSB0": "ttyUSB0",
		"COM3":         "COM3",
		`\\.\COM12`:    "COM12",
		"/dev/serial/by-id/usb-FTDI_FT232R_A10K3ZP-if00-port0": "usb-FTDI_FT232R_A10K3ZP-if00-port0",
		"usb:0403:6001:A10K3ZP":                                "usb-0403-6001-A10K3ZP",
		"serial:A1 B2":                                         "serial-A1-B2",
		"/tmp/x/--odd..name--":                                 "odd-name",
		"/":                                                    "port",
		"/tmp/ümlaut":                                          "mlaut",
	} {
		got := PortName(path)
		assert.Equal(t, want, got, path)
		assert.NoError(t, link.CheckName(got), path)
	}
	n := PortName(long)
	assert.NoError(t, link.CheckName(n))
	assert.Len(t, n, link.MaxName)
	assert.Equal(t, n, PortName(long), "stable")
	assert.NotEqual(t, n, PortName(long+"1"), "distinct")
	assert.True(t, strings.HasPrefix(n, "usb-Silicon_Labs_CP2102"), n)
}

// WatchGlob attaches what matches, then what appears; a path that goes
// and comes back keeps its member; one that fails to attach is logged
// once and left out.
func TestHubWatchGlob(t *testing.T) {
	dir := t.TempDir()
	touch := func(name string) { require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o600)) }
	touch("usb-one")
	touch("bad")
	h, logs := portHub(t)
	cables := map[string]*memline.Cable{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := h.WatchGlob(ctx, "[", GlobOptions{Attachment: func(string, string) (Attachment, error) { return Attachment{}, nil }})
	assert.ErrorContains(t, err, "syntax error")
	go func() {
		_ = h.WatchGlob(ctx, filepath.Join(dir, "*"), GlobOptions{Every: 50 * time.Millisecond,
			Attachment: func(name, path string) (Attachment, error) {
				if name == "bad" {
					return Attachment{}, os.ErrPermission
				}
				c := memline.New(uint64(len(cables) + 1))
				cables[name] = c
				return Attachment{Options: endpoint.Options{Driver: line{c.End(0)}}}, nil
			}})
	}()
	require.Eventually(t, func() bool { _, ok := h.Peer("usb-one"); return ok }, 5*time.Second, 10*time.Millisecond)
	touch("usb-two")
	require.Eventually(t, func() bool { _, ok := h.Peer("usb-two"); return ok }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, os.Remove(filepath.Join(dir, "usb-one")))
	time.Sleep(150 * time.Millisecond)
	touch("usb-one")
	time.Sleep(150 * time.Millisecond)
	ms := h.Peers()
	require.Len(t, ms, 2)
	assert.Equal(t, filepath.Join(dir, "usb-one"), ms[0].Path)
	assert.Equal(t, 1, strings.Count(logs.String(), "port left out"), "%s", logs)
	assert.Equal(t, 2, strings.Count(logs.String(), "port found: a new peer"), "%s", logs)
}
