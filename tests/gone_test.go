//go:build unix

package tests

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Kill -9 the --listen end during a download through the connector's -L:
// the connector's redials are refused, so the client is told at once (its
// connection ends) and new clients are turned away until a peer is back
// (issue 13, item 2).
func TestTCPFarEndGoneEndsDownload(t *testing.T) {
	srv := transferServer(t)
	linkAddr := addr(freePort(t))
	lport := freePort(t)
	rec := start(t, "receptor", "link", "--listen", linkAddr)
	con := start(t, "connector", "link", "--connect", linkAddr, "-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv))
	con.waitLog("link up", 10*time.Second)

	c, err := net.DialTimeout("tcp", addr(lport), 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[:8], 1<<40) // a download that will not finish
	_, err = c.Write(hdr[:])
	require.NoError(t, err)
	_, err = io.CopyN(io.Discard, c, 1<<20) // under way
	require.NoError(t, err)

	rec.signal(syscall.SIGKILL)
	rec.wait(5 * time.Second)
	killed := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	if errorAs(err, &ne) {
		require.False(t, ne.Timeout(), "the client must be told, not left waiting")
	}
	assert.Less(t, time.Since(killed), 20*time.Second, "told within 20 s")
	con.waitLog("far end is gone: connection refused", 5*time.Second)
	expectTurnedAway(t, addr(lport))
}
