//go:build unix

package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/tcpdriver"
)

// hubKeys is a peers file and a key file per peer, in dir.
type hubKeys struct {
	dir   string
	peers string
	keys  map[string]string // key file by peer name
	hex   map[string]string
}

// newHubKeys writes a key for each name and a peers file listing them.
func newHubKeys(t *testing.T, names ...string) *hubKeys {
	t.Helper()
	k := &hubKeys{dir: t.TempDir(), keys: map[string]string{}, hex: map[string]string{}}
	k.peers = filepath.Join(k.dir, "peers")
	for _, n := range append(names, "stranger") {
		var b [32]byte
		_, _ = rand.Read(b[:])
		k.hex[n] = hex.EncodeToString(b[:])
		k.keys[n] = filepath.Join(k.dir, n+".key")
		require.NoError(t, os.WriteFile(k.keys[n], []byte(k.hex[n]+"\n"), 0o600))
	}
	k.write(t, names...)
	return k
}

// write makes the peers file list names.
func (k *hubKeys) write(t *testing.T, names ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# NAME KEY\n")
	for _, n := range names {
		fmt.Fprintf(&b, "%s %s\n", n, k.hex[n])
	}
	require.NoError(t, os.WriteFile(k.peers+".tmp", []byte(b.String()), 0o600))
	require.NoError(t, os.Rename(k.peers+".tmp", k.peers))
}

// peer starts a named end that connects to the hub at hubAddr.
func (k *hubKeys) peer(t *testing.T, hubAddr, name string, args ...string) *proc {
	t.Helper()
	return start(t, "peer "+name, append([]string{"link", "--connect", hubAddr, "--name", name, "--secret-file", k.keys[name],
		"--control", filepath.Join(controlDir(t), "c.sock")}, args...)...)
}

// hubStatus is the part of a hub's `sockmux status --json` the tests read.
type hubStatus struct {
	State    string `json:"state"`
	Hub      bool   `json:"hub"`
	RSSBytes uint64 `json:"rss_bytes"`
	Refused  uint64 `json:"refused"`
	Peers    []struct {
		Name    string `json:"name"`
		State   string `json:"state"`
		Streams int    `json:"streams"`
		BytesIn uint64 `json:"bytes_in"`
	} `json:"peers"`
}

func queryHub(t *testing.T, sock string, args ...string) (hubStatus, string) {
	t.Helper()
	code, out := run(t, 10*time.Second, append([]string{"status", "--json", "--control", sock}, args...)...)
	require.Equal(t, 0, code, out)
	var st hubStatus
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	return st, out
}

// A hub with three named peers: forwards to each by name (-L ...@PEER)
// and from each (-R), the -D proxy by HOST.PEER.sockmux, status per peer;
// a wrong key and an unknown name are refused with the reason while the
// others carry on.
func TestHubNamedPeersForwardBothWays(t *testing.T) {
	srv := transferServer(t)
	web := webServer(t, "web")
	names := []string{"alpha", "beta", "gamma"}
	k := newHubKeys(t, names...)
	hubAddr := addr(freePort(t))
	sock := filepath.Join(controlDir(t), "hub.sock")
	dport := freePort(t)
	args := []string{"link", "--listen", hubAddr, "--peers", k.peers, "--control", sock, "-D", fmt.Sprint(dport)}
	lports, rports := map[string]int{}, map[string]int{}
	for _, n := range names {
		lports[n], rports[n] = freePort(t), freePort(t)
		args = append(args, "-L", fmt.Sprintf("%d:127.0.0.1:%d@%s", lports[n], srv, n))
	}
	hub := start(t, "hub", args...)
	hub.waitLog("hub listening", 10*time.Second)
	peers := map[string]*proc{}
	for _, n := range names {
		peers[n] = k.peer(t, hubAddr, n, "-R", fmt.Sprintf("%d:127.0.0.1:%d", rports[n], srv))
	}
	for _, n := range names {
		peers[n].waitLog("link up", 15*time.Second)
		waitListening(t, addr(rports[n]), 10*time.Second)
	}
	var wg sync.WaitGroup
	for i, n := range names {
		for j, port := range []int{lports[n], rports[n]} {
			wg.Go(func() {
				assert.NoError(t, transfer(addr(port), 1<<20, 1<<20, uint64(10*i+j)), "%s port %d", n, port)
			})
		}
	}
	wg.Wait()
	// The proxy reaches a host at a peer by HOST.PEER.sockmux.
	wport := web.Listener.Addr().(*net.TCPAddr).Port
	code, body := get(t, socksClient(t, addr(dport)), fmt.Sprintf("http://localhost.beta.sockmux:%d/x", wport))
	assert.Equal(t, 200, code)
	assert.Equal(t, "web: GET /x ", body)
	_, err := socksClient(t, addr(dport)).Get(fmt.Sprintf("http://localhost.nobody.sockmux:%d/", wport))
	assert.Error(t, err)
	hub.waitLog(`no peer \"nobody\" in the hub's peers file`, 5*time.Second)

	// A wrong key and an unknown name: refused, with the reason on both
	// sides; the others are untouched.
	wrong := start(t, "wrong key", "link", "--connect", hubAddr, "--name", "gamma", "--secret-file", k.keys["stranger"],
		"--control", filepath.Join(controlDir(t), "w.sock"))
	unknown := k.peer(t, hubAddr, "stranger")
	unknown.waitLog(`unknown peer \"stranger\": not in the hub's peers file`, 10*time.Second)
	hub.waitLog(`msg="peer refused"`, 5*time.Second)
	// gamma is connected: the wrong key's connection waits for gamma's
	// link to give up its own, and is not let in meanwhile.
	time.Sleep(500 * time.Millisecond)
	assert.NotContains(t, wrong.logText(), "link up")

	st, _ := queryHub(t, sock)
	assert.True(t, st.Hub)
	require.Len(t, st.Peers, 3)
	for _, p := range st.Peers {
		assert.Equal(t, "up", p.State, p.Name)
		assert.NotZero(t, p.BytesIn, p.Name)
	}
	assert.NotZero(t, st.Refused)
	_, one := queryHub(t, sock, "beta")
	assert.Contains(t, one, `"state": "up"`)
	code, out := run(t, 10*time.Second, "status", "--control", sock)
	require.Equal(t, 0, code, out)
	for _, want := range []string{"sockmux hub", "3 up of 3", "PEER", "alpha", "beta", "gamma"} {
		assert.Contains(t, out, want)
	}
	code, out = run(t, 10*time.Second, "status", "--control", sock, "nobody")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, `no peer "nobody"`)
	for _, n := range names {
		require.NoError(t, transfer(addr(lports[n]), 1<<10, 1<<10, 99), n)
	}
}

// A wrong key for a peer that is not connected is refused by that peer's
// link, and said so on both sides.
func TestHubWrongKeyRefused(t *testing.T) {
	k := newHubKeys(t, "alpha")
	hubAddr := addr(freePort(t))
	hub := start(t, "hub", "link", "--listen", hubAddr, "--peers", k.peers, "--control", filepath.Join(controlDir(t), "hub.sock"))
	hub.waitLog("hub listening", 10*time.Second)
	wrong := start(t, "wrong key", "link", "--connect", hubAddr, "--name", "alpha", "--secret-file", k.keys["stranger"],
		"--control", filepath.Join(controlDir(t), "w.sock"))
	// Whichever end runs the key handshake's first message learns it
	// failed from the other; both say so.
	wrong.waitLogAny(15*time.Second, "the peer refused us: the handshake did not verify", "its handshake did not verify")
	hub.waitLog("name=alpha", 5*time.Second)
	hub.waitLog("did not verify", 5*time.Second)
	unnamed := start(t, "unnamed", "link", "--connect", hubAddr, "--secret-file", k.keys["alpha"],
		"--control", filepath.Join(controlDir(t), "u.sock"))
	unnamed.waitLog("the connecting end must name itself", 10*time.Second)
}

// A peer removed from the peers file is disconnected on SIGHUP, its
// streams reset with the reason; a peer added is served; the others
// carry on.
func TestHubSIGHUPRemovesAndAddsPeers(t *testing.T) {
	srv := transferServer(t)
	hold := holdServer(t)
	k := newHubKeys(t, "alpha", "beta", "delta")
	k.write(t, "alpha", "beta")
	hubAddr := addr(freePort(t))
	la, lb := freePort(t), freePort(t)
	hub := start(t, "hub", "link", "--listen", hubAddr, "--peers", k.peers, "--control", filepath.Join(controlDir(t), "hub.sock"),
		"-L", fmt.Sprintf("%d:127.0.0.1:%d@alpha", la, srv), "-L", fmt.Sprintf("%d:127.0.0.1:%d@beta", lb, hold))
	hub.waitLog("hub listening", 10*time.Second)
	a := k.peer(t, hubAddr, "alpha")
	b := k.peer(t, hubAddr, "beta")
	d := k.peer(t, hubAddr, "delta")
	a.waitLog("link up", 15*time.Second)
	b.waitLog("link up", 15*time.Second)
	c := idleStream(t, addr(lb))
	time.Sleep(200 * time.Millisecond)

	k.write(t, "alpha", "delta")
	hub.signal(syscall.SIGHUP)
	hub.waitLog("peers file reloaded", 10*time.Second)
	b.waitLog(`peer closed the session" reason="removed from the hub's peers file"`, 10*time.Second)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	if errorAs(err, &ne) {
		assert.False(t, ne.Timeout(), "the removed peer's stream must be reset, not left hanging")
	}
	d.waitLog("link up", 90*time.Second) // it was held off as unknown: up to its backoff
	b.waitLog(`unknown peer \"beta\"`, 15*time.Second)
	require.NoError(t, transfer(addr(la), 1<<20, 1<<20, 5))
}

// A peer killed mid-transfer: the others' transfers finish intact
// (sha256); the peer restarted is back at once, and its old streams are
// reset then (a new session), only its.
func TestHubPeerKilledMidTransfer(t *testing.T) {
	srv := transferServer(t)
	names := []string{"alpha", "beta", "gamma"}
	k := newHubKeys(t, names...)
	hubAddr := addr(freePort(t))
	args := []string{"link", "--listen", hubAddr, "--peers", k.peers, "--control", filepath.Join(controlDir(t), "hub.sock")}
	lports := map[string]int{}
	for _, n := range names {
		lports[n] = freePort(t)
		args = append(args, "-L", fmt.Sprintf("%d:127.0.0.1:%d@%s", lports[n], srv, n))
	}
	hub := start(t, "hub", args...)
	hub.waitLog("hub listening", 10*time.Second)
	// Each peer reaches the hub through a relay of 8 MB/s each way, so
	// that the transfers are under way when beta is killed.
	peers := map[string]*proc{}
	for _, n := range names {
		peers[n] = k.peer(t, newRelay(t, hubAddr, 8<<20).addr(), n)
	}
	for _, n := range names {
		peers[n].waitLog("link up", 15*time.Second)
	}
	const size = 8 << 20
	results := map[string]chan error{}
	for _, n := range names {
		results[n] = make(chan error, 1)
	}
	for i, n := range names {
		done := results[n] // the map is not the goroutine's to read
		go func() { done <- transfer(addr(lports[n]), size, size, uint64(i)) }()
	}
	time.Sleep(400 * time.Millisecond)
	peers["beta"].signal(syscall.SIGKILL)
	peers["beta"].wait(5 * time.Second)
	for _, n := range []string{"alpha", "gamma"} {
		select {
		case err := <-results[n]:
			require.NoError(t, err, n)
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s's transfer did not finish", n)
		}
	}
	// beta's session waits for beta to come back (--resume-timeout), as
	// a plain end's does: beta restarted is a new session, which resets
	// the old one's streams.
	restarted := time.Now()
	again := k.peer(t, hubAddr, "beta")
	again.waitLog("link up", 10*time.Second)
	t.Logf("beta back %v after its restart", time.Since(restarted).Round(time.Millisecond))
	select {
	case err := <-results["beta"]:
		require.Error(t, err, "beta's transfer cannot finish: its peer was killed")
	case <-time.After(10 * time.Second):
		t.Fatal("beta's transfer was left hanging after beta came back")
	}
	hub.waitLog("peer started a new session; streams of the old one are reset", 5*time.Second)
	require.NoError(t, transfer(addr(lports["beta"]), 1<<20, 1<<20, 9))
	assert.Zero(t, peers["alpha"].countLog("transport lost"))
	assert.Zero(t, peers["gamma"].countLog("transport lost"))
}

// The scale rows at a small size: 50 peers (ends in this process, the
// hub the real binary), 500 streams across them with a byte each way,
// and the hub's memory per idle peer.
func TestHubScaleSmall(t *testing.T) {
	const peers, perPeer = 50, 10
	echo := testutil.ServeLoopback(t, testutil.Echo)
	var names []string
	for i := range peers {
		names = append(names, fmt.Sprintf("p%02d", i))
	}
	k := newHubKeys(t, names...)
	hubAddr := addr(freePort(t))
	sock := filepath.Join(controlDir(t), "hub.sock")
	hub := start(t, "hub", "link", "--listen", hubAddr, "--peers", k.peers, "--control", sock, "--log-level", "warn")
	waitListening(t, hubAddr, 10*time.Second)
	before, _ := queryHub(t, sock)

	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	t.Cleanup(func() { cancel(); running.Wait() })
	eps := make([]*endpoint.Endpoint, peers)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i, n := range names {
		key, err := hex.DecodeString(k.hex[n])
		require.NoError(t, err)
		ep, err := endpoint.New(endpoint.Options{
			Driver: &tcpdriver.Connector{Addr: hubAddr},
			Link:   link.Config{Name: n, Secret: key},
			Logger: quiet,
		})
		require.NoError(t, err)
		eps[i] = ep
		running.Go(func() { _ = ep.Run(ctx) })
	}
	require.Eventually(t, func() bool {
		for _, ep := range eps {
			if ep.Link.State() != link.StateUp {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond, "every peer up")
	time.Sleep(time.Second)
	idle, _ := queryHub(t, sock)
	if before.RSSBytes > 0 && idle.RSSBytes > 0 {
		per := (int64(idle.RSSBytes) - int64(before.RSSBytes)) / peers
		t.Logf("hub resident memory: %d KiB with %d peers built, %d KiB with all connected and idle: %d KiB per connected idle peer",
			before.RSSBytes>>10, peers, idle.RSSBytes>>10, per>>10)
		assert.Less(t, per, int64(256<<10), "memory per idle peer")
	}

	var wg sync.WaitGroup
	errs := make(chan error, peers*perPeer)
	opened := make(chan *mux.Stream, peers*perPeer)
	for _, ep := range eps {
		for range perPeer {
			wg.Go(func() {
				octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
				defer ocancel()
				s, err := ep.Mux.Open(octx, mux.Info{Network: "tcp", Dest: echo.Addr().String()})
				if err != nil {
					errs <- err
					return
				}
				opened <- s
				if _, err := s.Write([]byte{7}); err != nil {
					errs <- err
					return
				}
				var b [1]byte
				_ = s.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, err := io.ReadFull(s, b[:]); err != nil || b[0] != 7 {
					errs <- fmt.Errorf("echo: %v %v", b, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	st, _ := queryHub(t, sock)
	open := 0
	for _, p := range st.Peers {
		assert.Equal(t, "up", p.State, p.Name)
		open += p.Streams
	}
	assert.Equal(t, peers*perPeer, open, "every stream open at once at the hub")
	close(opened)
	for s := range opened {
		s.Close()
	}
	require.Eventually(t, func() bool {
		st, _ := queryHub(t, sock)
		n := 0
		for _, p := range st.Peers {
			n += p.Streams
		}
		return n == 0
	}, 30*time.Second, 100*time.Millisecond)
	hub.signal(syscall.SIGTERM)
	assert.Equal(t, 0, hub.wait(30*time.Second))
}
