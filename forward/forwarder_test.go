package forward

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/proxy"

	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

// logBuf is a log that tests can search.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuf) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(l.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", s, l.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// end is one end of an in-process link: a mux and its forwarder.
type end struct {
	m   *mux.Mux
	f   *Forwarder
	log *logBuf
}

// linkedPair joins two forwarders over two muxes that pass payloads to
// each other directly, as a link would.
func linkedPair(t *testing.T, cfgA, cfgB Config) (a, b *end) {
	t.Helper()
	wakeA, wakeB := make(chan struct{}, 1), make(chan struct{}, 1)
	wake := func(c chan struct{}) func() {
		return func() {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
	// The muxes pass payloads to each other directly, with no link, so
	// this builds the layers itself rather than with package endpoint
	// (which imports forward), wiring the hooks as endpoint.New does.
	mk := func(cfg Config, wake func()) *end {
		e := &end{log: &logBuf{}}
		cfg.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if cfg.DialTimeout == 0 {
			cfg.DialTimeout = 3 * time.Second
		}
		e.m = mux.New(mux.Config{
			OnListen:     func(r mux.ListenRequest) error { return e.f.OnListen(r) },
			OnUnlisten:   func(r mux.ListenRequest) error { return e.f.OnUnlisten(r) },
			OnSessionEnd: func(reason error) { e.f.OnSessionEnd(reason) },
			Notify:       wake,
			Logger:       quiet(),
		})
		e.f = New(e.m, cfg)
		return e
	}
	a, b = mk(cfgA, wake(wakeA)), mk(cfgB, wake(wakeB))
	a.m.SessionStart(link.SessionInfo{Local: 2, Peer: 1})
	b.m.SessionStart(link.SessionInfo{Local: 1, Peer: 2})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	pump := func(from, to *mux.Mux, wake chan struct{}) {
		defer wg.Done()
		buf := make([]byte, 16<<10)
		for {
			if n, _ := from.Fill(buf, len(buf)); n > 0 {
				if err := to.Deliver(buf[:n]); err != nil {
					t.Errorf("deliver: %v", err)
					return
				}
				continue
			}
			select {
			case <-wake:
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(4)
	go pump(a.m, b.m, wakeA)
	go pump(b.m, a.m, wakeB)
	go func() { defer wg.Done(); _ = a.f.Serve(ctx) }()
	go func() { defer wg.Done(); _ = b.f.Serve(ctx) }()
	t.Cleanup(func() {
		a.f.Close()
		b.f.Close()
		a.m.Close()
		b.m.Close()
		cancel()
		close(stop)
		wg.Wait()
		if t.Failed() {
			t.Logf("log of A:\n%s\nlog of B:\n%s", a.log, b.log)
		}
	})
	return a, b
}

func rules(t *testing.T, specs ...string) []Rule {
	t.Helper()
	var out []Rule
	for _, s := range specs {
		r, err := ParseRule(s)
		require.NoError(t, err)
		out = append(out, r)
	}
	return out
}

func free(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		defer pc.Close()
		return pc.LocalAddr().String()
	}
	return deadPort(t)
}

// addEntrance adds a --port entrance at addr (a free loopback address).
func addEntrance(t *testing.T, e *end, network, addr string) string {
	t.Helper()
	spec := strings.TrimPrefix(addr, "127.0.0.1:")
	if network == "udp" {
		spec += "/udp"
	}
	fs, err := ParseEntrances(spec)
	require.NoError(t, err)
	require.NoError(t, e.f.Add(fs[0]))
	return addr
}

func portText(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func TestEntranceRoutedByFarEndRules(t *testing.T) {
	one := echoServer(t, "tcp4", "one")
	two := echoServer(t, "tcp4", "two")
	p1, p2, p3 := free(t, "tcp"), free(t, "tcp"), free(t, "tcp")
	a, b := linkedPair(t, Config{}, Config{Rules: rules(t, one+":-:-P"+portText(p1), two+",-in:-:-P"+portText(p2)+",127.0.0.1")})
	for _, p := range []string{p1, p2, p3} {
		addEntrance(t, a, "tcp", p)
	}
	for addr, want := range map[string]string{p1: "one", p2: "two"} {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		roundTrip(t, c, want)
		c.Close()
	}
	// No rule for the third port, and the entrance names no destination.
	// The refusal may reset the connection before connect(2) reports
	// success to the dialler; either way the client is turned away.
	if c, err := net.Dial("tcp", p3); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		require.Error(t, err)
	} else {
		require.ErrorIs(t, err, syscall.ECONNRESET)
	}
	b.log.waitFor(t, "no route for a tcp connection from 127.0.0.1:")
	a.log.waitFor(t, "far end refused the connection")
	a.log.waitFor(t, "no route for a tcp connection from")
}

func TestRoutingOrder(t *testing.T) {
	ruled := echoServer(t, "tcp4", "rule")
	asked := echoServer(t, "tcp4", "asked")
	for _, tc := range []struct {
		name, rule, want string
	}{
		{"a rule for another entrance leaves -L alone", ruled + ":-:-P" + portText(ruled), "asked"},
		{"a matching rule wins over the destination asked for", ruled, "rule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := linkedPair(t, Config{}, Config{Rules: rules(t, tc.rule)})
			l := free(t, "tcp")
			fw, err := ParseForward(Local, portText(l)+":"+asked)
			require.NoError(t, err)
			require.NoError(t, a.f.Add(fw))
			c, err := net.Dial("tcp", l)
			require.NoError(t, err)
			roundTrip(t, c, tc.want)
			c.Close()
			// Our own -R comes before any rule.
			r := free(t, "tcp")
			fw, err = ParseForward(Remote, portText(r)+":"+asked)
			require.NoError(t, err)
			require.NoError(t, b.f.Add(fw))
			a.log.waitFor(t, "listening for the far end's remote forward")
			c, err = net.Dial("tcp", r)
			require.NoError(t, err)
			roundTrip(t, c, "asked")
			c.Close()
		})
	}
}

func addDynamic(t *testing.T, e *end) proxy.Dialer {
	t.Helper()
	d := free(t, "tcp")
	fw, err := ParseForward(Dynamic, portText(d))
	require.NoError(t, err)
	require.NoError(t, e.f.Add(fw))
	dialer, err := proxy.SOCKS5("tcp", d, nil, proxy.Direct)
	require.NoError(t, err)
	return dialer
}

func TestDynamicForwardCarriesDestinationInOpenFrame(t *testing.T) {
	a, b := linkedPair(t, Config{}, Config{})
	echo := echoServer(t, "tcp4", "far")
	dialer := addDynamic(t, a)
	c, err := dialer.Dial("tcp", echo)
	require.NoError(t, err)
	roundTrip(t, c, "far")
	c.Close()
	b.log.waitFor(t, "dest="+echo)

	// The far end refuses: the SOCKS client hears it as refused.
	dead := deadPort(t)
	_, err = dialer.Dial("tcp", dead)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
	a.log.waitFor(t, "far end refused the connection")
	b.log.waitFor(t, "connection refused by "+dead)
}

func TestDynamicForwardDeniedByFarEndPolicy(t *testing.T) {
	pol, err := ParseAllow([]string{"127.0.0.1:1"})
	require.NoError(t, err)
	a, _ := linkedPair(t, Config{}, Config{Allow: pol})
	dialer := addDynamic(t, a)
	_, err = dialer.Dial("tcp", echoServer(t, "tcp4", "x"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not allowed")
}

func TestExitProxyServesEntranceClients(t *testing.T) {
	a, _ := linkedPair(t, Config{}, Config{Rules: rules(t, "socks")})
	entrance := addEntrance(t, a, "tcp", free(t, "tcp"))
	echo := echoServer(t, "tcp4", "via-socks")
	dialer, err := proxy.SOCKS5("tcp", entrance, nil, proxy.Direct)
	require.NoError(t, err)
	c, err := dialer.Dial("tcp", echo)
	require.NoError(t, err)
	roundTrip(t, c, "via-socks")
	c.Close()
}

func TestUDPKeepsDatagramBoundariesPerClient(t *testing.T) {
	echo := testutil.UDPReplyServer(t, "re:")
	r, err := ParseDest(echo + "/udp")
	require.NoError(t, err)
	a, _ := linkedPair(t, Config{}, Config{Rules: []Rule{r}})
	entrance := addEntrance(t, a, "udp", free(t, "udp"))

	c1, err := net.Dial("udp", entrance)
	require.NoError(t, err)
	defer c1.Close()
	c2, err := net.Dial("udp", entrance)
	require.NoError(t, err)
	defer c2.Close()
	testutil.UDPRoundTrip(t, c1, "one", "re:one", 3)
	testutil.UDPRoundTrip(t, c2, "two", "re:two", 3)
	big := strings.Repeat("x", 60000)
	testutil.UDPRoundTrip(t, c1, big, "re:"+big, 3)
	testutil.UDPRoundTrip(t, c1, "", "re:", 3)
	a.f.mu.Lock()
	require.Len(t, a.f.active, 1)
	e := a.f.active[0].lns[0].(*udpEntrance)
	a.f.mu.Unlock()
	e.mu.Lock()
	assert.Len(t, e.sessions, 2, "one session per client address")
	e.mu.Unlock()
}

func TestUDPSessionsEndWhenIdleAndAtTheLimit(t *testing.T) {
	a, b := linkedPair(t, Config{UDPTimeout: 300 * time.Millisecond, UDPMaxSessions: 2}, Config{UDPTimeout: 300 * time.Millisecond})
	echo := testutil.UDPReplyServer(t, "")
	fw, err := ParseForward(Local, portText(free(t, "udp"))+":"+echo+"/udp")
	require.NoError(t, err)
	require.NoError(t, a.f.Add(fw))
	e := a.f.active[0].lns[0].(*udpEntrance)
	entrance := e.pc.LocalAddr().String()
	sessions := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.sessions)
	}
	var conns []net.Conn
	for i := range 3 {
		c, err := net.Dial("udp", entrance)
		require.NoError(t, err)
		defer c.Close()
		conns = append(conns, c)
		testutil.UDPRoundTrip(t, c, fmt.Sprint(i), fmt.Sprint(i), 3)
		assert.LessOrEqual(t, sessions(), 2)
	}
	a.log.waitFor(t, "UDP session limit reached")
	deadline := time.Now().Add(5 * time.Second)
	for sessions() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.Zero(t, sessions(), "idle sessions end")
	// A client that comes back after its session ended gets a new one.
	testutil.UDPRoundTrip(t, conns[0], "again", "again", 3)
	deadline = time.Now().Add(5 * time.Second)
	for b.m.NumStreams() > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.LessOrEqual(t, b.m.NumStreams(), 1, "the exit forgets ended sessions")
}

func TestUDPNoRouteIsLoggedAtBothEnds(t *testing.T) {
	a, b := linkedPair(t, Config{}, Config{})
	entrance := addEntrance(t, a, "udp", free(t, "udp"))
	c, err := net.Dial("udp", entrance)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("hello?"))
	require.NoError(t, err)
	b.log.waitFor(t, "no route for a udp connection")
	a.log.waitFor(t, "far end refused the datagrams")
}

func TestDatagramFraming(t *testing.T) {
	var buf bytes.Buffer
	for _, d := range []string{"a", "", strings.Repeat("z", maxDatagram)} {
		require.NoError(t, writeDatagram(&buf, []byte(d)))
	}
	assert.Error(t, writeDatagram(&buf, make([]byte, maxDatagram+1)))
	for _, want := range []string{"a", "", strings.Repeat("z", maxDatagram)} {
		got, err := readDatagram(&buf)
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
	}
	_, err := readDatagram(&buf)
	assert.ErrorIs(t, err, io.EOF)
	_, err = readDatagram(bytes.NewReader([]byte{0, 5, 'a'}))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

func TestParseForwardPeer(t *testing.T) {
	for spec, want := range map[string]Forward{
		"8080:localhost:80@cab-17":         {Kind: Local, Network: "tcp", Bind: "127.0.0.1:8080", Dest: "localhost:80", Peer: "cab-17"},
		"*:53:10.0.0.1:53/udp@lab_2":       {Kind: Local, Network: "udp", Bind: ":53", Dest: "10.0.0.1:53", Peer: "lab_2"},
		"53:10.0.0.1:53@lab_2/udp":         {Kind: Local, Network: "udp", Bind: "127.0.0.1:53", Dest: "10.0.0.1:53", Peer: "lab_2"},
		"[::1]:22:[2001:db8::1]:22@router": {Kind: Local, Network: "tcp", Bind: "[::1]:22", Dest: "[2001:db8::1]:22", Peer: "router"},
	} {
		got, err := ParseForward(Local, spec)
		require.NoError(t, err, spec)
		assert.Equal(t, want, got, spec)
	}
	for _, bad := range []string{"8080:h:80@", "8080:h:80@-x", "8080:h:80@a.b"} {
		_, err := ParseForward(Local, bad)
		assert.Error(t, err, bad)
	}
	_, err := ParseForward(Dynamic, "1080@cab")
	assert.ErrorContains(t, err, "HOST.PEER.sockmux")
	f := New(mux.New(mux.Config{}), Config{})
	fw, err := ParseForward(Local, "8080:h:80@cab")
	require.NoError(t, err)
	assert.ErrorContains(t, f.Add(fw), "only a hub")
	assert.Equal(t, "-L 127.0.0.1:8080 -> h:80 @cab", fw.String())
}
