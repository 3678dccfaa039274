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

	"github.com/sockmux/sockmux/internal/testutil"
)

// freeUDPPort returns a loopback UDP port nothing uses right now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// -L and -R with /udp carry datagrams both ways with their boundaries:
// several clients at once, each answered at its own address, datagrams of
// every size up to 60000 bytes.
func TestUDPLocalAndRemoteForwards(t *testing.T) {
	t.Parallel()
	nearServer, farServer := testutil.UDPReplyServer(t, "near:"), testutil.UDPReplyServer(t, "far:")
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
					testutil.UDPRoundTrip(t, c, msg, tc.prefix+msg, 5)
				}
				testutil.UDPRoundTrip(t, c, "", tc.prefix, 5)
			}()
		}
	}
	wg.Wait()
}

// A UDP session ends after --udp-timeout of silence at both ends, and the
// client's next datagram starts a new one.
func TestUDPIdleTimeout(t *testing.T) {
	t.Parallel()
	server := testutil.UDPReplyServer(t, "")
	lport := freeUDPPort(t)
	rec, con, _ := tcpPair(t,
		[]string{"--udp-timeout", "400ms", "--log-level", "debug"},
		[]string{"--udp-timeout", "400ms", "--log-level", "debug", "-L", fmt.Sprintf("%d:%s/udp", lport, server)})
	c, err := net.Dial("udp", addr(lport))
	require.NoError(t, err)
	defer c.Close()
	testutil.UDPRoundTrip(t, c, "first", "first", 5)
	con.waitLog("UDP session idle", 5*time.Second)
	rec.waitLog("UDP session idle", 5*time.Second)
	testutil.UDPRoundTrip(t, c, "second", "second", 5)
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
