package hub

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/peers"
	"github.com/sockmux/sockmux/tcpdriver"
)

func keyHex(b byte) string { return strings.Repeat(fmt.Sprintf("%02x", b), link.KeySize) }

func keyOf(b byte) []byte { return bytes.Repeat([]byte{b}, link.KeySize) }

func table(t *testing.T, lines ...string) *peers.Table {
	t.Helper()
	tb, err := peers.Parse(strings.Join(lines, "\n"), "peers", t.TempDir())
	require.NoError(t, err)
	return tb
}

type rig struct {
	hub    *Hub
	logs   *testutil.LogBuffer
	cancel context.CancelFunc
	done   chan struct{}
}

func startHub(t *testing.T, tb *peers.Table) *rig {
	t.Helper()
	acc, err := tcpdriver.ListenMany("127.0.0.1:0", tcpdriver.AcceptOptions{})
	require.NoError(t, err)
	logs := &testutil.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	h, err := New(Config{Acceptor: acc, Peers: tb, Logger: log,
		Endpoint: func(p peers.Peer) (endpoint.Options, error) {
			return endpoint.Options{Link: link.Config{HandshakeTimeout: 3 * time.Second}}, nil
		}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{hub: h, logs: logs, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); _ = h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// connector runs a named end that connects to the hub.
func connector(t *testing.T, addr, name string, key []byte) (*endpoint.Endpoint, *testutil.LogBuffer) {
	t.Helper()
	logs := &testutil.LogBuffer{}
	ep, err := endpoint.New(endpoint.Options{
		Driver: &tcpdriver.Connector{Addr: addr},
		Link:   link.Config{Name: name, Secret: key, HandshakeTimeout: 3 * time.Second},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ep.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ep, logs
}

func up(t *testing.T, l *link.Link) {
	t.Helper()
	require.Eventually(t, func() bool { return l.State() == link.StateUp }, 10*time.Second, 10*time.Millisecond)
}

// echoThrough opens a stream from ep's mux to dest at its far end and
// checks an echo.
func echoThrough(t *testing.T, m *mux.Mux, dest, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := m.Open(ctx, mux.Info{Network: "tcp", Dest: dest})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Write([]byte(msg))
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(s, got)
	require.NoError(t, err)
	assert.Equal(t, msg, string(got))
}

func TestHubServesNamedPeers(t *testing.T) {
	echo := testutil.ServeLoopback(t, testutil.Echo)
	dest := echo.Addr().String()
	r := startHub(t, table(t, "a "+keyHex(1), "b "+keyHex(2), "c "+keyHex(3), "e "+keyHex(5)))
	addr := r.hub.Addr().String()
	eps := map[string]*endpoint.Endpoint{}
	logs := map[string]*testutil.LogBuffer{}
	for i, name := range []string{"a", "B", "c"} {
		low := strings.ToLower(name)
		eps[low], logs[low] = connector(t, addr, name, keyOf(byte(i+1)))
	}
	for name, ep := range eps {
		up(t, ep.Link)
		m, ok := r.hub.Peer(name)
		require.True(t, ok)
		up(t, m.Endpoint.Link)
		// Both ways: the hub to the peer, the peer to the hub.
		echoThrough(t, m.Endpoint.Mux, dest, "hub to "+name)
		echoThrough(t, ep.Mux, dest, name+" to hub")
		assert.True(t, strings.EqualFold(name, m.Endpoint.Link.PeerName()))
	}
	assert.Len(t, r.hub.Peers(), 4)

	// An unknown name and a wrong key are refused with the reason, and
	// the others carry on.
	_, strangerLog := connector(t, addr, "mallory", keyOf(9))
	_, wrongLog := connector(t, addr, "e", keyOf(9))
	require.Eventually(t, func() bool {
		return strings.Contains(strangerLog.String(), `unknown peer \"mallory\": not in the hub's peers file`) &&
			strings.Contains(wrongLog.String(), "the peer refused us")
	}, 15*time.Second, 20*time.Millisecond, "stranger: %s\nwrong key: %s", strangerLog, wrongLog)
	assert.Contains(t, r.logs.String(), "peer refused")
	assert.Contains(t, r.logs.String(), "name=e")
	assert.Contains(t, r.logs.String(), "did not verify")
	for name, ep := range eps {
		assert.Equal(t, link.StateUp, ep.Link.State(), name)
	}

	// b removed: disconnected with the reason; a rekeyed; d added.
	ch, err := r.hub.Reload(table(t, "a "+keyHex(7), "c "+keyHex(3), "d "+keyHex(4), "e "+keyHex(5)))
	require.NoError(t, err)
	assert.Equal(t, peers.Changes{Added: []string{"d"}, Removed: []string{"b"}, Rekeyed: []string{"a"}}, ch)
	_, ok := r.hub.Peer("b")
	assert.False(t, ok)
	require.Eventually(t, func() bool {
		return strings.Contains(logs["b"].String(), "peer closed the session") && strings.Contains(logs["b"].String(), Removed)
	}, 10*time.Second, 10*time.Millisecond, "%s", logs["b"])
	// a's new key applies to its next handshake: a with the old key is
	// refused once its connection breaks, a with the new one gets in.
	eps["a"].Stop(0, "test")
	old, oldLog := connector(t, addr, "a", keyOf(1))
	require.Eventually(t, func() bool { return strings.Contains(oldLog.String(), "did not verify") }, 15*time.Second, 20*time.Millisecond, "%s", oldLog)
	old.Stop(0, "test")
	a2, _ := connector(t, addr, "a", keyOf(7))
	up(t, a2.Link)
	d, _ := connector(t, addr, "d", keyOf(4))
	up(t, d.Link)
	echoThrough(t, d.Mux, dest, "d to hub")
	up(t, eps["c"].Link)
	echoThrough(t, eps["c"].Mux, dest, "c still")
}

func TestSplitHost(t *testing.T) {
	for host, want := range map[string][2]string{
		"web.cab-17.sockmux":       {"web", "cab-17"},
		"10.0.0.5.Lab_2.SOCKMUX":   {"10.0.0.5", "lab_2"},
		"a.b.c.peer.sockmux.":      {"a.b.c", "peer"},
		"localhost.router.sockmux": {"localhost", "router"},
		"example.com":              {"", ""},
		"cab.sockmux":              {"", ""},
		".cab.sockmux":             {"", ""},
		"sockmux":                  {"", ""},
	} {
		inner, peer, ok := SplitHost(host)
		assert.Equal(t, want[0] != "", ok, host)
		assert.Equal(t, want, [2]string{inner, peer}, host)
	}
}
