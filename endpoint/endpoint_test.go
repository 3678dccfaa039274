package endpoint

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/tcpdriver"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// running is an endpoint whose Run goes on in the background.
type running struct {
	*Endpoint
	done chan error
}

func start(t *testing.T, ctx context.Context, opts Options) *running {
	t.Helper()
	opts.Logger = quiet()
	e, err := New(opts)
	require.NoError(t, err)
	r := &running{e, make(chan error, 1)}
	go func() { r.done <- e.Run(ctx) }()
	return r
}

// pair runs two endpoints over loopback TCP and waits until both are up.
func pair(t *testing.T, a, b Options) (*running, *running, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rec, err := tcpdriver.Listen("127.0.0.1:0", tcpdriver.ListenOptions{})
	require.NoError(t, err)
	a.Driver = rec
	b.Driver = &tcpdriver.Connector{Addr: rec.Addr().String()}
	ra, rb := start(t, ctx, a), start(t, ctx, b)
	t.Cleanup(func() {
		cancel()
		<-ra.done
		<-rb.done
	})
	require.Eventually(t, func() bool {
		return ra.Link.State() == link.StateUp && rb.Link.State() == link.StateUp
	}, 10*time.Second, 10*time.Millisecond)
	return ra, rb, cancel
}

// A connection through a local forward of one endpoint reaches a server
// behind the other: the layers are wired both ways.
func TestForwardThroughAPair(t *testing.T) {
	srv := testutil.ServeLoopback(t, testutil.Echo)
	port, err := testutil.FreePort()
	require.NoError(t, err)
	a, _, _ := pair(t, Options{}, Options{})
	bind := fmt.Sprintf("127.0.0.1:%d", port)
	require.NoError(t, a.Forwarder.Add(forward.Forward{Kind: forward.Local, Network: "tcp", Bind: bind, Dest: srv.Addr().String()}))
	c, err := net.DialTimeout("tcp", bind, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	got := make([]byte, 4)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(got))
}

// A remote forward travels as a listen request to the far end's
// forwarder, through the mux hook the endpoint wired.
func TestRemoteForwardReachesTheFarForwarder(t *testing.T) {
	srv := testutil.ServeLoopback(t, testutil.GreetThenEcho("hi"))
	port, err := testutil.FreePort()
	require.NoError(t, err)
	a, _, _ := pair(t, Options{}, Options{})
	bind := fmt.Sprintf("127.0.0.1:%d", port)
	require.NoError(t, a.Forwarder.Add(forward.Forward{Kind: forward.Remote, Network: "tcp", Bind: bind, Dest: srv.Addr().String()}))
	var c net.Conn
	require.Eventually(t, func() bool {
		c, err = net.DialTimeout("tcp", bind, time.Second)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the far end listens for us")
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 2)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(got))
}

// Each endpoint's forwarder tells its own link's counters to the far
// end's link test: no state is shared between endpoints.
func TestCountersAreEachEndpointsOwn(t *testing.T) {
	a, b, _ := pair(t, Options{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, x := range []struct{ from, to *running }{{a, b}, {b, a}} {
		s, err := forward.OpenDiag(ctx, x.from.Mux, forward.DiagCounters)
		require.NoError(t, err)
		c, err := forward.ReadCounters(s, bufio.NewReader(s), time.Now().Add(5*time.Second))
		require.NoError(t, err)
		s.Close()
		far := x.to.Link.Stats()
		assert.Positive(t, c.FramesOut)
		assert.LessOrEqual(t, c.FramesOut, far.FramesOut.Load(), "the far end's own link counted them")
	}
}

// Stop shuts down in order: the far end is told the reason before the
// link closes, and Run returns nil.
func TestStopTellsTheFarEnd(t *testing.T) {
	a, b, _ := pair(t, Options{}, Options{})
	ended := make(chan error, 1)
	s, err := b.Mux.Open(context.Background(), mux.Info{Network: "tcp", Dest: "127.0.0.1:1"})
	require.NoError(t, err)
	go func() { _, err := s.Read(make([]byte, 1)); ended <- err }()
	a.Stop(0, "test over")
	select {
	case err := <-a.done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
	select {
	case err := <-ended:
		require.Error(t, err, "the far end's stream ends when this end stops")
	case <-time.After(10 * time.Second):
		t.Fatal("the far end's stream did not end")
	}
	require.Eventually(t, func() bool { return b.Link.State() != link.StateUp }, 10*time.Second, 10*time.Millisecond)
	a.done <- nil // for the cleanup
}

// closeCounter is a driver that counts its Close calls.
type closeCounter struct {
	link.Driver
	closes int
}

func (c *closeCounter) Close() error { c.closes++; return nil }

// Run ends when its context does, and the endpoint closes its driver,
// once.
func TestRunEndsWithItsContextAndClosesTheDriver(t *testing.T) {
	drv := &closeCounter{Driver: &tcpdriver.Connector{Addr: "127.0.0.1:1", DialTimeout: time.Second}}
	e, err := New(Options{Driver: drv, Grace: time.Second, Logger: quiet()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
	assert.Equal(t, 1, drv.closes)
	e.Close()
	assert.Equal(t, 1, drv.closes, "the driver is closed once")
	_, err = e.Mux.Open(context.Background(), mux.Info{Network: "tcp", Dest: "127.0.0.1:1"})
	assert.ErrorIs(t, err, mux.ErrMuxClosed, "the mux was closed on the way down")
}

func TestNewRefusesWhatItWires(t *testing.T) {
	drv := &tcpdriver.Connector{Addr: "127.0.0.1:1"}
	for name, o := range map[string]Options{
		"no driver":    {},
		"Notify":       {Driver: drv, Mux: mux.Config{Notify: func() {}}},
		"OnListen":     {Driver: drv, Mux: mux.Config{OnListen: func(mux.ListenRequest) error { return nil }}},
		"OnSessionEnd": {Driver: drv, Mux: mux.Config{OnSessionEnd: func(error) {}}},
		"LinkCounters": {Driver: drv, Forward: forward.Config{LinkCounters: func() forward.LinkCounters { return forward.LinkCounters{} }}},
		"negative":     {Driver: drv, Grace: -time.Second},
	} {
		_, err := New(o)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "endpoint: ", name)
	}
}

func TestStreamWindowFollowsTheLine(t *testing.T) {
	assert.Equal(t, 1<<20, StreamWindow(link.Properties{}))
	assert.Equal(t, mux.InitialWindow, StreamWindow(link.Properties{LineRate: 960}))
	assert.Equal(t, 2*115200, StreamWindow(link.Properties{LineRate: 115200}))
	assert.Equal(t, 4<<20, StreamWindow(link.Properties{LineRate: 100 << 20}))
}

// An out-of-range setting of the link or the mux is refused with the
// field and the range, not clamped.
func TestNewVerifiesTheLayersConfig(t *testing.T) {
	drv := &tcpdriver.Connector{Addr: "127.0.0.1:1"}
	for want, o := range map[string]Options{
		"link: MaxPayload 100: want 512 to 61440":    {Driver: drv, Link: link.Config{MaxPayload: 100}},
		"link: MaxPayload 61441: want 512 to 61440":  {Driver: drv, Link: link.Config{MaxPayload: 61441}},
		`link: service name "a,b"`:                   {Driver: drv, Link: link.Config{Services: []string{"a,b"}}},
		"mux: MaxStreams 2000000: want 1 to 1048576": {Driver: drv, Mux: mux.Config{MaxStreams: 2000000}},
		"mux: StreamWindow 1000: want 65536":         {Driver: drv, Mux: mux.Config{StreamWindow: 1000}},
	} {
		_, err := New(o)
		require.Error(t, err, want)
		assert.Contains(t, err.Error(), want)
	}
	e, err := New(Options{Driver: drv, Link: link.Config{MaxPayload: link.MinPayload}, Mux: mux.Config{MaxStreams: mux.MaxStreamsLimit}, Logger: quiet()})
	require.NoError(t, err, "the bounds themselves are valid")
	e.Close()
}
