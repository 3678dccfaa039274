//go:build unix

package tests

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/internal/testutil"
)

// tcpPair starts a receptor and a connector over loopback TCP with the
// given extra arguments, and waits for the link.
func tcpPair(t *testing.T, receptorArgs, connectorArgs []string) (rec, con *proc, linkAddr string) {
	t.Helper()
	linkAddr = addr(freePort(t))
	rec = start(t, "receptor", append([]string{"link", "--listen", linkAddr}, receptorArgs...)...)
	con = start(t, "connector", append([]string{"link", "--connect", linkAddr}, connectorArgs...)...)
	rec.waitLog("link up", 10*time.Second)
	con.waitLog("link up", 10*time.Second)
	return rec, con, linkAddr
}

func TestTCPTransfer10MiBEachWay(t *testing.T) {
	srv := transferServer(t)
	lport, rport := freePort(t), freePort(t)
	rec, _, _ := tcpPair(t,
		[]string{"-R", fmt.Sprintf("%d:127.0.0.1:%d", rport, srv)},
		[]string{"-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv)})
	rec.waitLog("far end listens for our remote forward", 10*time.Second)
	waitListening(t, addr(rport), 10*time.Second)
	const size = 10 << 20
	var wg sync.WaitGroup
	for i, port := range []int{lport, rport} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, transfer(addr(port), size, size, uint64(100+i)), "through port %d", port)
		}()
	}
	wg.Wait()
}

func TestTCPHundredConcurrentStreams(t *testing.T) {
	srv := transferServer(t)
	lport := freePort(t)
	tcpPair(t, nil, []string{"-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv)})
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := int64(50<<10 + rand.IntN(100<<10))
			assert.NoError(t, transfer(addr(lport), size, size/2, uint64(i)), "stream %d", i)
		}()
	}
	wg.Wait()
}

func TestTCPRefusedDestinationClosesClientPromptly(t *testing.T) {
	dead := freePort(t) // nothing listens here
	lport := freePort(t)
	rec, _, _ := tcpPair(t, nil, []string{"-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, dead)})
	expectTurnedAway(t, addr(lport))
	rec.waitLog(fmt.Sprintf("connection refused by 127.0.0.1:%d", dead), 5*time.Second)
}

func TestTCPConnectionCutMidTransferLosesNothing(t *testing.T) {
	srv := transferServer(t)
	lport := freePort(t)
	linkAddr := addr(freePort(t))
	rec := start(t, "receptor", "link", "--listen", linkAddr)
	rl := newRelay(t, linkAddr, 0)
	con := start(t, "connector", "link", "--connect", rl.addr(), "-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv))
	con.waitLog("link up", 10*time.Second)

	const size = 20 << 20
	done := make(chan error, 1)
	go func() { done <- transfer(addr(lport), size, size, 42) }()
	for i := range 4 {
		time.Sleep(300 * time.Millisecond)
		rl.cut()
		for con.countLog("link resumed") < i+1 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Minute):
		t.Fatal("transfer did not finish")
	}
	assert.GreaterOrEqual(t, con.countLog("link resumed"), 1)
	assert.Zero(t, con.countLog("new session"), "the session survived the cuts")
	assert.Zero(t, rec.countLog("new session"))
}

func TestTCPPeerRestartResetsOldStreamsAndServesNewOnes(t *testing.T) {
	// A destination that accepts and never answers keeps a stream open.
	hold := holdServer(t)
	linkAddr := addr(freePort(t))
	lport, lport2 := freePort(t), freePort(t)
	srv := transferServer(t)
	rec := start(t, "receptor", "link", "--listen", linkAddr)
	con := start(t, "connector", "link", "--connect", linkAddr, "-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, hold),
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", lport2, srv))
	con.waitLog("link up", 10*time.Second)
	c := idleStream(t, addr(lport))
	time.Sleep(200 * time.Millisecond)

	rec.signal(syscall.SIGKILL)
	rec.wait(5 * time.Second)
	rec2 := start(t, "receptor-2", "link", "--listen", linkAddr)
	rec2.waitLog("link up", 15*time.Second)
	// The connector learns the session is gone either from the new
	// receptor's hello or, when its redials were refused for longer than
	// it waits, by giving the session up first; both reset its streams.
	con.waitLogAny(5*time.Second, "peer started a new session", "session given up; its streams are reset")

	// The old client is told: its connection is reset.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	if errorAs(err, &ne) {
		assert.False(t, ne.Timeout(), "the old connection must be ended, not left hanging")
	}
	// New connections work.
	require.NoError(t, transfer(addr(lport2), 1<<20, 1<<20, 7))
}

func errorAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

func TestTCPGracefulShutdown(t *testing.T) {
	rec, con, _ := tcpPair(t, nil, nil)
	con.signal(os.Interrupt)
	assert.Equal(t, 0, con.wait(10*time.Second))
	rec.waitLog("peer closed the session", 5*time.Second)
	rec.signal(syscall.SIGTERM)
	assert.Equal(t, 0, rec.wait(10*time.Second))
}

func TestBadInput(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"link", "--connect", "127.0.0.1:1", "-L", "8080:localhost"}, "want [BIND:]PORT:HOST:HOSTPORT"},
		{[]string{"link", "--connect", "127.0.0.1:1", "-L", "99999:localhost:80"}, "not a port number"},
		{[]string{"link", "--connect", "127.0.0.1:1", "-R", "80:[::1:80"}, "'[' without ']'"},
		{[]string{"link", "--connect", "127.0.0.1:1", "-L", "x:8080:localhost:http"}, "destination port"},
		{[]string{"link", "--connect", "127.0.0.1:1", "-L", busy.Addr().String() + ":127.0.0.1:80"}, "address already in use"},
		{[]string{"link", "--listen", busy.Addr().String()}, "address already in use"},
		{[]string{"link"}, "no transport"},
		{[]string{"link", "--listen", "127.0.0.1:0", "--connect", "127.0.0.1:1"}, "more than one transport"},
		{[]string{"link", "--connect", "127.0.0.1:1", "--log-level", "loud"}, "--log-level"},
		{[]string{"link", "--connect", "127.0.0.1:1", "--frobnicate"}, "flag provided but not defined"},
		{[]string{"link", "--comm", "/nonexistent/ttyUSB9"}, "/nonexistent/ttyUSB9"},
		{[]string{"nonsense"}, "nonsense"},
	} {
		code, out := run(t, 10*time.Second, tc.args...)
		assert.Equal(t, 1, code, "%v: exit code; output:\n%s", tc.args, out)
		assert.Contains(t, out, tc.want, "%v", tc.args)
		assert.NotContains(t, out, "panic", "%v", tc.args)
		assert.NotContains(t, out, "goroutine ", "%v", tc.args)
	}
}

func TestUnreachableConnectRetriesWithClearLog(t *testing.T) {
	p := start(t, "connector", "link", "--connect", addr(freePort(t)))
	p.waitLog("transport open failed", 5*time.Second)
	p.waitLog("connection refused", time.Second)
	p.signal(os.Interrupt)
	assert.Equal(t, 0, p.wait(10*time.Second))
}

func TestNonSockmuxPeer(t *testing.T) {
	// A receptor that a garbage-sending client connects to.
	linkAddr := addr(freePort(t))
	rec := start(t, "receptor", "link", "--listen", linkAddr, "--handshake-timeout", "1s")
	time.Sleep(300 * time.Millisecond)
	c, err := net.Dial("tcp", linkAddr)
	require.NoError(t, err)
	defer c.Close()
	go func() {
		buf := make([]byte, 256)
		for range 30 {
			for i := range buf {
				buf[i] = byte(rand.IntN(256))
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	rec.waitLog("not sockmux frames", 5*time.Second)

	// A connector that reaches a server speaking something else.
	ln := testutil.ServeLoopback(t, func(c net.Conn) {
		_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
		hold(c)
	})
	con := start(t, "connector", "link", "--connect", ln.Addr().String(), "--handshake-timeout", "1s")
	con.waitLog("link handshake failed", 5*time.Second)
	assert.NotContains(t, con.logText(), "panic")
	assert.NotContains(t, rec.logText(), "panic")
}
