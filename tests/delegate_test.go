//go:build unix

package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/internal/testutil"
)

// The examples of DeleGate's SockMux manual, each run in DeleGate's own
// syntax (sockmux delegate) and in sockmux's (sockmux link), with hostX
// and hostY both on loopback. docs/delegate.md lists the same commands.

// greeterServer answers each connection with greeting, then echoes.
func greeterServer(t *testing.T, greeting string) int {
	t.Helper()
	return testutil.Port(testutil.ServeLoopback(t, testutil.GreetThenEcho(greeting)))
}

// checkGreeting connects through to a greeterServer and checks that it is
// the one with greeting and that bytes flow both ways.
func checkGreeting(t *testing.T, c net.Conn, greeting string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(greeting))
	_, err := io.ReadFull(c, got)
	require.NoError(t, err, "waiting for %q", greeting)
	require.Equal(t, greeting, string(got))
	_, err = io.WriteString(c, "ping\n")
	require.NoError(t, err)
	echo := make([]byte, 5)
	_, err = io.ReadFull(c, echo)
	require.NoError(t, err)
	assert.Equal(t, "ping\n", string(echo))
}

func dialGreeting(t *testing.T, address, greeting string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", address, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	checkGreeting(t, c, greeting)
}

// exampleEnd is one end of an example: its arguments in DeleGate's syntax and
// in sockmux link's.
type exampleEnd struct {
	name          string
	delegate, lnk []string
}

// listenEnd is hostX of an example over a TCP tunnel: it listens for the
// tunnel at tunnel, with the further arguments delegate or lnk.
func listenEnd(tunnel string, delegate, lnk []string) exampleEnd {
	return exampleEnd{"hostX",
		append([]string{"SERVER=sockmux", "-P" + tunnel}, delegate...),
		append([]string{"--listen", tunnel}, lnk...)}
}

// connectEnd is hostY of an example over a TCP tunnel: it connects to the
// tunnel at tunnel, with the further arguments delegate or lnk.
func connectEnd(tunnel string, delegate, lnk []string) exampleEnd {
	return exampleEnd{"hostY",
		append([]string{"SERVER=sockmux://" + tunnel}, delegate...),
		append([]string{"--connect", tunnel}, lnk...)}
}

// startExample starts each end in the syntax asked for and waits until every
// link is up.
func startExample(t *testing.T, syntax string, ends ...exampleEnd) []*proc {
	t.Helper()
	var ps []*proc
	for _, e := range ends {
		if syntax == "delegate" {
			ps = append(ps, start(t, e.name, append([]string{"delegate"}, e.delegate...)...))
		} else {
			ps = append(ps, start(t, e.name, append([]string{"link"}, e.lnk...)...))
		}
	}
	for _, p := range ps {
		p.waitLog("link up", 15*time.Second)
		if syntax == "delegate" {
			assert.Contains(t, p.logText(), "running DeleGate parameters as a sockmux link")
		}
	}
	return ps
}

// bothSyntaxes runs an example in DeleGate's syntax and in sockmux's, in
// parallel.
func bothSyntaxes(t *testing.T, example func(t *testing.T, syntax string)) {
	t.Parallel()
	for _, syntax := range []string{"delegate", "link"} {
		t.Run(syntax, func(t *testing.T) {
			t.Parallel()
			example(t, syntax)
		})
	}
}

func strPort(n int) string { return strconv.Itoa(n) }

// hostX% delegated SERVER=sockmux -PhostX:9000 PORT=9023 SERVER="telnet://hostX,-in"
// hostY% delegated SERVER=sockmux://hostX:9000 PORT=9023 SERVER="telnet://hostY,-in"
func TestDelegateExampleBidirectional(t *testing.T) {
	bothSyntaxes(t, func(t *testing.T, syntax string) {
		telnetX, telnetY := greeterServer(t, "telnetd on X\r\n"), greeterServer(t, "telnetd on Y\r\n")
		tunnel, portX, portY := addr(freePort(t)), freePort(t), freePort(t)
		startExample(t, syntax,
			listenEnd(tunnel,
				[]string{"PORT=" + strPort(portX), "SERVER=telnet://127.0.0.1:" + strPort(telnetX) + ",-in"},
				[]string{"--port", strPort(portX), "--server", "telnet://127.0.0.1:" + strPort(telnetX)}),
			connectEnd(tunnel,
				[]string{"PORT=" + strPort(portY), "SERVER=telnet://127.0.0.1:" + strPort(telnetY) + ",-in"},
				[]string{"--port", strPort(portY), "--server", "telnet://127.0.0.1:" + strPort(telnetY)}))
		dialGreeting(t, addr(portX), "telnetd on Y\r\n")
		dialGreeting(t, addr(portY), "telnetd on X\r\n")
	})
}

// hostX% delegated SERVER=sockmux -PhostX:9000 SERVER="telnet://hostX,-in"
// hostY% delegated SERVER=sockmux://hostX:9000 PORT=hostY:9023
func TestDelegateExampleUnidirectional(t *testing.T) {
	bothSyntaxes(t, func(t *testing.T, syntax string) {
		telnetX := greeterServer(t, "telnetd on X\r\n")
		tunnel, portY := addr(freePort(t)), freePort(t)
		startExample(t, syntax,
			listenEnd(tunnel,
				[]string{"SERVER=telnet://127.0.0.1:" + strPort(telnetX) + ",-in"},
				[]string{"--server", "telnet://127.0.0.1:" + strPort(telnetX)}),
			connectEnd(tunnel,
				[]string{"PORT=127.0.0.1:" + strPort(portY)},
				[]string{"--port", "127.0.0.1:" + strPort(portY)}))
		dialGreeting(t, addr(portY), "telnetd on X\r\n")
	})
}

// hostX% delegated SERVER=sockmux -PhostX:9000 PORT=hostX:9023
// hostY% delegated SERVER=sockmux://hostX:9000 SERVER=telnet,-in
func TestDelegateExampleToProxyTelnet(t *testing.T) {
	bothSyntaxes(t, func(t *testing.T, syntax string) {
		telnetZ := greeterServer(t, "telnetd on Z\r\n")
		tunnel, portX := addr(freePort(t)), freePort(t)
		startExample(t, syntax,
			listenEnd(tunnel,
				[]string{"PORT=127.0.0.1:" + strPort(portX)},
				[]string{"--port", "127.0.0.1:" + strPort(portX)}),
			connectEnd(tunnel,
				[]string{"SERVER=telnet,-in"},
				[]string{"--server", "telnet"}))
		c, err := net.Dial("tcp", addr(portX))
		require.NoError(t, err)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		readTo := func(s string) string {
			var b strings.Builder
			for !strings.HasSuffix(b.String(), s) {
				ch, err := r.ReadByte()
				require.NoError(t, err, "waiting for %q after %q", s, b.String())
				b.WriteByte(ch)
			}
			return b.String()
		}
		assert.Contains(t, readTo(">> host port: "), "sockmux telnet proxy")
		_, err = fmt.Fprintf(c, "127.0.0.1 %d\r\n", telnetZ)
		require.NoError(t, err)
		assert.Contains(t, readTo("telnetd on Z\r\n"), fmt.Sprintf("-- connected to 127.0.0.1:%d", telnetZ))
		_, err = io.WriteString(c, "ping\n")
		require.NoError(t, err)
		readTo("ping\n")
	})
}

// hostX% delegated SERVER=sockmux -PhostX:9000 PORT=hostX:9023
// hostY% delegated SERVER=sockmux://hostX:9000 DEST=hostT:23
func TestDelegateExampleTCPRelay(t *testing.T) {
	bothSyntaxes(t, func(t *testing.T, syntax string) {
		hostT := transferServer(t)
		tunnel, portX := addr(freePort(t)), freePort(t)
		startExample(t, syntax,
			listenEnd(tunnel,
				[]string{"PORT=127.0.0.1:" + strPort(portX)},
				[]string{"--port", "127.0.0.1:" + strPort(portX)}),
			connectEnd(tunnel,
				[]string{"DEST=" + addr(hostT)},
				[]string{"--dest", addr(hostT)}))
		require.NoError(t, transfer(addr(portX), 1<<20, 1<<20, 9))
	})
}

// hostX% delegated SERVER=sockmux -PhostX:9000 PORT=hostX:53/udp
// hostY% delegated SERVER=sockmux://hostX:9000 DEST=hostU:53/udp
func TestDelegateExampleUDPRelay(t *testing.T) {
	bothSyntaxes(t, func(t *testing.T, syntax string) {
		hostU := testutil.UDPReplyServer(t, "dns says ")
		tunnel, portX := addr(freePort(t)), freeUDPPort(t)
		startExample(t, syntax,
			listenEnd(tunnel,
				[]string{"PORT=127.0.0.1:" + strPort(portX) + "/udp"},
				[]string{"--port", "127.0.0.1:" + strPort(portX) + "/udp"}),
			connectEnd(tunnel,
				[]string{"DEST=" + hostU + "/udp"},
				[]string{"--dest", hostU + "/udp"}))
		for i := range 2 {
			c, err := net.Dial("udp", addr(portX))
			require.NoError(t, err)
			defer c.Close()
			testutil.UDPRoundTrip(t, c, fmt.Sprintf("query %d", i), fmt.Sprintf("dns says query %d", i), 5)
		}
	})
}

// mkfifo fifo1 fifo2
// % delegated SERVER=sockmux:commin@fifo1 SERVER=sockmux:commout@fifo2 PORT=9023
// % delegated SERVER=sockmux:commin@fifo2 SERVER=sockmux:commout@fifo1 SERVER=telnet://host,-in
func TestDelegateExampleFIFOOnOneHost(t *testing.T) {
	bothSyntaxes(t, func(t *testing.T, syntax string) {
		fifos := mkfifos(t, "fifo1", "fifo2")
		fifo1, fifo2 := fifos[0], fifos[1]
		telnetd := greeterServer(t, "telnetd\r\n")
		port := freePort(t)
		startExample(t, syntax,
			exampleEnd{"A",
				[]string{"SERVER=sockmux:commin@" + fifo1, "SERVER=sockmux:commout@" + fifo2, "PORT=" + strPort(port)},
				[]string{"--commin", fifo1, "--commout", fifo2, "--port", strPort(port)}},
			exampleEnd{"B",
				[]string{"SERVER=sockmux:commin@" + fifo2, "SERVER=sockmux:commout@" + fifo1, "SERVER=telnet://127.0.0.1:" + strPort(telnetd) + ",-in"},
				[]string{"--commin", fifo2, "--commout", fifo1, "--server", "telnet://127.0.0.1:" + strPort(telnetd)}})
		dialGreeting(t, addr(port), "telnetd\r\n")
	})
}

// hostX% delegated SERVER=sockmux:comm@/dev/ttyS0 PORT=9023
// hostY% delegated SERVER=sockmux:comm@com1 SERVER=telnet://hostY,-in
// The null-modem cable between the two is sockmux's virtual cable.
func TestDelegateExampleCommPortBetweenTwoHosts(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("no pseudo-terminals for the virtual cable")
	}
	bothSyntaxes(t, func(t *testing.T, syntax string) {
		dir := t.TempDir()
		ttyX, ttyY := filepath.Join(dir, "ttyS0"), filepath.Join(dir, "com1")
		cable := start(t, "cable", "cable", "--baud", "0", "--report-every", "0", ttyX, ttyY)
		cable.waitLog(fmt.Sprintf("cable %s <-> %s up", ttyX, ttyY), 10*time.Second)
		telnetY := greeterServer(t, "telnetd on Y\r\n")
		port := freePort(t)
		startExample(t, syntax,
			exampleEnd{"hostX",
				[]string{"SERVER=sockmux:comm@" + ttyX, "PORT=" + strPort(port)},
				[]string{"--comm", ttyX, "--port", strPort(port)}},
			exampleEnd{"hostY",
				[]string{"SERVER=sockmux:comm@" + ttyY, "SERVER=telnet://127.0.0.1:" + strPort(telnetY) + ",-in"},
				[]string{"--comm", ttyY, "--server", "telnet://127.0.0.1:" + strPort(telnetY)}})
		dialGreeting(t, addr(port), "telnetd on Y\r\n")
	})
}

// hostX% delegated SERVER=sockmux -PhostX:9000 PORT=9023,9080
// hostY% delegated SERVER=sockmux://hostX:9000 SERVER=telnet://hostY,-in:-:-P9023 SERVER=http://hostY,-in:-:-P9080
func TestDelegateExampleMultiplePorts(t *testing.T) {
	bothSyntaxes(t, func(t *testing.T, syntax string) {
		telnetY := greeterServer(t, "telnetd on Y\r\n")
		web := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "httpd on Y")
		})}
		wln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		go func() { _ = web.Serve(wln) }()
		t.Cleanup(func() { web.Close() })
		httpY := wln.Addr().(*net.TCPAddr).Port
		tunnel, pTelnet, pHTTP := addr(freePort(t)), freePort(t), freePort(t)
		startExample(t, syntax,
			listenEnd(tunnel,
				[]string{fmt.Sprintf("PORT=%d,%d", pTelnet, pHTTP)},
				[]string{"--port", fmt.Sprintf("%d,%d", pTelnet, pHTTP)}),
			connectEnd(tunnel,
				[]string{fmt.Sprintf("SERVER=telnet://127.0.0.1:%d,-in:-:-P%d", telnetY, pTelnet),
					fmt.Sprintf("SERVER=http://127.0.0.1:%d,-in:-:-P%d", httpY, pHTTP)},
				[]string{"--server", fmt.Sprintf("telnet://127.0.0.1:%d:-:-P%d", telnetY, pTelnet),
					"--server", fmt.Sprintf("http://127.0.0.1:%d:-:-P%d", httpY, pHTTP)}))
		dialGreeting(t, addr(pTelnet), "telnetd on Y\r\n")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr(pHTTP) + "/")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "httpd on Y", string(body))
	})
}

// A rule can pick connections by the client's address: the same entrance
// leads to one server for 127.0.0.2 and to another for everyone else.
func TestRuleBySourceHost(t *testing.T) {
	t.Parallel()
	forTwo, forOthers := greeterServer(t, "for 127.0.0.2\n"), greeterServer(t, "for the others\n")
	tunnel, port := addr(freePort(t)), freePort(t)
	startExample(t, "delegate",
		exampleEnd{"hostX", []string{"SERVER=sockmux", "-P" + tunnel, "PORT=" + strPort(port)}, nil},
		exampleEnd{"hostY", []string{"SERVER=sockmux://" + tunnel,
			fmt.Sprintf("SERVER=tcprelay://127.0.0.1:%d,-in:-:{127.0.0.2}", forTwo),
			fmt.Sprintf("SERVER=tcprelay://127.0.0.1:%d,-in:-:127.0.0.0/8,!127.0.0.2", forOthers)}, nil})
	dialFrom := func(local string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr(port))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	checkGreeting(t, dialFrom("127.0.0.2"), "for 127.0.0.2\n")
	checkGreeting(t, dialFrom("127.0.0.1"), "for the others\n")
	checkGreeting(t, dialFrom("127.0.0.3"), "for the others\n")
}

// A connection that no rule routes and that names no destination is
// closed, and both ends say why.
func TestNoRouteClosesTheClientAndLogsBothEnds(t *testing.T) {
	t.Parallel()
	telnetd := greeterServer(t, "telnetd\r\n")
	tunnel, routed, unrouted := addr(freePort(t)), freePort(t), freePort(t)
	ps := startExample(t, "link",
		exampleEnd{"hostX", nil, []string{"--listen", tunnel, "--port", fmt.Sprintf("%d,%d", routed, unrouted)}},
		exampleEnd{"hostY", nil, []string{"--connect", tunnel, "--server", fmt.Sprintf("127.0.0.1:%d:-:-P%d", telnetd, routed)}})
	dialGreeting(t, addr(routed), "telnetd\r\n")
	expectTurnedAway(t, addr(unrouted))
	want := fmt.Sprintf("that entered at port %d: no rule matches", unrouted)
	ps[1].waitLog(want, 5*time.Second)
	ps[1].waitLog("no route for a tcp connection from 127.0.0.1:", time.Second)
	ps[0].waitLog(want, 5*time.Second)
	ps[0].waitLog("far end refused the connection", time.Second)
}

func TestDelegatePrintsTheEquivalentLink(t *testing.T) {
	code, out := run(t, 10*time.Second, "delegate", "--print", "SERVER=sockmux://hostX:9000",
		"SERVER=telnet://hostY,-in:-:-P9023", "SERVER=http://hostY,-in:-:-P9080", "DEST=hostU:53/udp")
	assert.Equal(t, 0, code, out)
	assert.Equal(t, "sockmux link --connect hostX:9000 --server telnet://hostY:-:-P9023 --server http://hostY:-:-P9080 --dest hostU:53/udp\n", out)
	code, out = run(t, 10*time.Second, "delegate", "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "SERVER=sockmux://host:port")
}

// Malformed rules and DeleGate parameters sockmux cannot honour stop it
// at once with one line that names the culprit.
func TestBadRulesAndParameters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"link", "--connect", "127.0.0.1:1", "--server", "tcp://hostY"}, `--server: rule "tcp://hostY": "tcp://hostY" needs a port`},
		{[]string{"link", "--connect", "127.0.0.1:1", "--server", "ftp"}, `no built-in "ftp" proxy`},
		{[]string{"link", "--connect", "127.0.0.1:1", "--server", "h:1:-:-Pnine"}, `entrance port "-Pnine"`},
		{[]string{"link", "--connect", "127.0.0.1:1", "--server", "h:1:-:10.0.0.0/40"}, `host "10.0.0.0/40"`},
		{[]string{"link", "--connect", "127.0.0.1:1", "--dest", "nohostport"}, `--dest: dest "nohostport"`},
		{[]string{"link", "--connect", "127.0.0.1:1", "--port", "99999"}, "--port: port \"99999\""},
		{[]string{"link", "--connect", "127.0.0.1:1", "-D", "1080:x:80"}, "-D: forward"},
		{[]string{"link", "--connect", "127.0.0.1:1", "-D", "1080/udp"}, "TCP only"},
		{[]string{"link", "--connect", "127.0.0.1:1", "--udp-timeout", "0s"}, "--udp-timeout"},
		{[]string{"link", "--connect", "127.0.0.1:1", "--keepalive", "10s", "--dead-timeout", "5s"}, "--dead-timeout and --keepalive: link: DeadTimeout 5s is not longer than KeepAlive 10s"},
		{[]string{"delegate", "SERVER=sockmux://127.0.0.1:1", "FSV=sslway"}, "DeleGate parameter FSV=sslway is not supported"},
		{[]string{"delegate", "SERVER=sockmux://127.0.0.1:1", "SERVER=telnet://h,-in(+=x.cnf)"}, "cannot run a DeleGate with options"},
		{[]string{"delegate", "SERVER=sockmux://127.0.0.1:1", "SERVER=telnet://h"}, `add ",-in"`},
		{[]string{"delegate", "SERVER=sockmux"}, "needs -Phost:port"},
		{[]string{"delegate", "PORT=9023"}, "no SockMux tunnel"},
		{[]string{"delegate", "SERVER=sockmux://127.0.0.1:1", "-Q"}, `"-Q" is not a DeleGate parameter`},
	} {
		code, out := run(t, 10*time.Second, tc.args...)
		assert.Equal(t, 1, code, "%v: exit code; output:\n%s", tc.args, out)
		assert.Contains(t, out, tc.want, "%v", tc.args)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "%v: one line, got:\n%s", tc.args, out)
		assert.True(t, strings.HasPrefix(out, "sockmux: "), "%v: %s", tc.args, out)
	}
}
