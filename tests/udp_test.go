//go:build unix

package tests

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// udpReplyServer answers each datagram with prefix + the datagram, to the
// address it came from.
func udpReplyServer(t *testing.T, prefix string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte(prefix), buf[:n]...), from)
		}
	}()
	return pc.LocalAddr().String()
}

// freeUDPPort returns a loopback UDP port nothing uses right now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// udpRoundTrip sends msg on c until an answer comes (the first datagrams
// may be sent before the link's far end is ready, and UDP may lose them)
// and checks that the answer is want, whole.
func udpRoundTrip(t *testing.T, c net.Conn, msg, want string) {
	t.Helper()
	buf := make([]byte, 65535)
	for try := 0; ; try++ {
		_, err := c.Write([]byte(msg))
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil {
			require.Equal(t, want, string(buf[:n]))
			return
		}
		if try == 5 {
			t.Fatalf("no answer to a %d-byte datagram: %v", len(msg), err)
		}
	}
}

// -L and -R with /udp carry datagrams both ways with their boundaries:
// several clients at once, each answered at its own address, datagrams of
// every size up to 60000 bytes.
func TestUDPLocalAndRemoteForwards(t *testing.T) {
	t.Parallel()
	nearServer, farServer := udpReplyServer(t, "near:"), udpReplyServer(t, "far:")
	lport, rport := freeUDPPort(t), freeUDPPort(t)
	rec, con, _ := tcpPair(t,
		[]string{"-R", fmt.Sprintf("%d:%s/udp", rport, nearServer)},
		[]string{"-L", fmt.Sprintf("%d:%s/udp", lport, farServer)})
	rec.waitLog("far end listens for our remote forward", 10*time.Second)
	con.waitLog("listening for the far end's remote forward", time.Second)

	var wg sync.WaitGroup
	for i := range 4 {
		for _, tc := range []struct {
			port   int
			prefix string
		}{{lport, "far:"}, {rport, "near:"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("udp", addr(tc.port))
				if !assert.NoError(t, err) {
					return
				}
				defer c.Close()
				for _, size := range []int{1, 100, 1400, 60000} {
					msg := fmt.Sprintf("client %d:", i) + strings.Repeat("d", size)
					udpRoundTrip(t, c, msg, tc.prefix+msg)
				}
				udpRoundTrip(t, c, "", tc.prefix)
			}()
		}
	}
	wg.Wait()
}

// A UDP session ends after --udp-timeout of silence at both ends, and the
// client's next datagram starts a new one.
func TestUDPIdleTimeout(t *testing.T) {
	t.Parallel()
	server := udpReplyServer(t, "")
	lport := freeUDPPort(t)
	rec, con, _ := tcpPair(t,
		[]string{"--udp-timeout", "400ms", "--log-level", "debug"},
		[]string{"--udp-timeout", "400ms", "--log-level", "debug", "-L", fmt.Sprintf("%d:%s/udp", lport, server)})
	c, err := net.Dial("udp", addr(lport))
	require.NoError(t, err)
	defer c.Close()
	udpRoundTrip(t, c, "first", "first")
	con.waitLog("UDP session idle", 5*time.Second)
	rec.waitLog("UDP session idle", 5*time.Second)
	udpRoundTrip(t, c, "second", "second")
	assert.Equal(t, 2, con.countLog("UDP session opened"), "a new session after the idle one")
}

// A UDP entrance with no rule at the far end: the datagrams go nowhere and
// both ends say why.
func TestUDPNoRoute(t *testing.T) {
	t.Parallel()
	port := freeUDPPort(t)
	rec, con, _ := tcpPair(t, nil, []string{"--port", fmt.Sprintf("%d/udp", port)})
	c, err := net.Dial("udp", addr(port))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("anyone?"))
	require.NoError(t, err)
	rec.waitLog("no route for a udp connection from 127.0.0.1:", 5*time.Second)
	con.waitLog("far end refused the datagrams", 5*time.Second)
}
