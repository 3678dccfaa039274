//go:build unix

package tests

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keyFile makes a key with sockmux keygen.
func keyFile(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	code, out := run(t, 10*time.Second, "keygen", path)
	require.Equal(t, 0, code, out)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	return path
}

func TestKeygenAndSecretFileChecks(t *testing.T) {
	k := keyFile(t, "k")
	code, out := run(t, 10*time.Second, "keygen", k)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "exists; use --force")
	require.NoError(t, os.Chmod(k, 0o644))
	code, out = run(t, 10*time.Second, "link", "--connect", "127.0.0.1:1", "--secret-file", k)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "can be read by others (mode 0644); make it private with: chmod 600 "+k)
	bad := filepath.Join(t.TempDir(), "bad")
	require.NoError(t, os.WriteFile(bad, []byte("not a key\n"), 0o600))
	code, out = run(t, 10*time.Second, "link", "--connect", "127.0.0.1:1", "--secret-file", bad)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "does not hold a 32-byte key")
	code, out = run(t, 10*time.Second, "link", "--listen", "0.0.0.0:0")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "accepts peers from other hosts")
}

func TestAuthenticatedLinkOverTCPFIFOAndCable(t *testing.T) {
	k := keyFile(t, "k")
	srv := transferServer(t)
	dir := t.TempDir()
	a2b, b2a := filepath.Join(dir, "a2b"), filepath.Join(dir, "b2a")
	ttyA, ttyB := filepath.Join(dir, "ttyA"), filepath.Join(dir, "ttyB")
	cable := start(t, "cable", "cable", "--baud", "0", ttyA, ttyB)
	_ = cable
	linkAddr := addr(freePort(t))
	for _, tc := range []struct {
		name string
		a, b []string
	}{
		{"tcp", []string{"--listen", linkAddr}, []string{"--connect", linkAddr}},
		{"fifo", []string{"--commout", a2b, "--commin", b2a}, []string{"--commin", a2b, "--commout", b2a}},
		{"cable", []string{"--comm", ttyA}, []string{"--comm", ttyB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "cable" {
				waitFile(t, ttyA)
			}
			lport := freePort(t)
			a := start(t, "a", append([]string{"link", "--secret-file", k, "-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv)}, tc.a...)...)
			b := start(t, "b", append([]string{"link", "--secret-file", k}, tc.b...)...)
			a.waitLog("link up", 15*time.Second)
			b.waitLog("link up", 15*time.Second)
			assert.Contains(t, a.logText(), "authentication on")
			require.NoError(t, transfer(addr(lport), 256<<10, 256<<10, 5))
			a.kill()
			b.kill()
		})
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWrongOrMissingKeyRefusedOnBothEnds(t *testing.T) {
	k1, k2 := keyFile(t, "k1"), keyFile(t, "k2")
	srv := transferServer(t)
	for _, tc := range []struct {
		name   string
		ka, kb []string
		want   string
	}{
		{"different keys", []string{"--secret-file", k1}, []string{"--secret-file", k2}, "peer failed authentication"},
		{"no key on one end", []string{"--secret-file", k1}, nil, "one end has a shared secret and the other has none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			linkAddr := addr(freePort(t))
			lport := freePort(t)
			rec := start(t, "receptor", append([]string{"link", "--listen", linkAddr}, tc.ka...)...)
			con := start(t, "connector", append([]string{"link", "--connect", linkAddr, "--link-wait", "1s",
				"-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv)}, tc.kb...)...)
			rec.waitLog(tc.want, 10*time.Second)
			con.waitLog(tc.want, 10*time.Second)
			// No stream can be opened: the client is turned away.
			c, err := net.Dial("tcp", addr(lport))
			if err == nil {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := c.Read(make([]byte, 1))
				assert.Zero(t, n)
				assert.Error(t, err)
				c.Close()
			}
			assert.NotContains(t, rec.logText(), "link up")
			assert.NotContains(t, con.logText(), "link up")
		})
	}
}

// flipRelay relays between the link ends and flips one bit in the
// connector's stream after every `every` bytes, as a man in the middle.
type flipRelay struct {
	ln      net.Listener
	every   int
	mu      sync.Mutex
	flipped int
	record  []byte // the connector's first bytes, for replay
}

func newFlipRelay(t *testing.T, to string, every int) *flipRelay {
	r := &flipRelay{every: every}
	r.ln = relayLoopback(t, dialTCP(to), func(a, b net.Conn) {
		go func() { _, _ = io.Copy(a, b); a.Close(); b.Close() }()
		defer a.Close()
		defer b.Close()
		buf := make([]byte, 4096)
		total := 0
		for {
			n, err := a.Read(buf)
			if n > 0 {
				r.mu.Lock()
				if len(r.record) < 4096 {
					r.record = append(r.record, buf[:min(n, 4096-len(r.record))]...)
				}
				for i := range n {
					total++
					if r.every > 0 && total%r.every == 0 {
						buf[i] ^= 0x10
						r.flipped++
					}
				}
				r.mu.Unlock()
				if _, err := b.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	return r
}

func TestTamperedFramesNeverDelivered(t *testing.T) {
	k := keyFile(t, "k")
	srv := transferServer(t)
	linkAddr := addr(freePort(t))
	lport := freePort(t)
	rec := start(t, "receptor", "link", "--listen", linkAddr, "--secret-file", k)
	relay := newFlipRelay(t, linkAddr, 300<<10)
	con := start(t, "connector", "link", "--connect", relay.ln.Addr().String(), "--secret-file", k,
		"-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv))
	con.waitLog("link up", 10*time.Second)
	require.NoError(t, transfer(addr(lport), 4<<20, 64<<10, 9), "the upload crossed the tampering relay intact")
	relay.mu.Lock()
	flipped := relay.flipped
	relay.mu.Unlock()
	assert.Greater(t, flipped, 3, "bits were flipped on the way")
	assert.GreaterOrEqual(t, rec.countLog("transport lost"), 1, "a damaged frame resets the transport")
	assert.GreaterOrEqual(t, con.countLog("link resumed"), 1, "and the session resumes")
}

func TestReplayedHandshakeFails(t *testing.T) {
	k := keyFile(t, "k")
	linkAddr := addr(freePort(t))
	rec := start(t, "receptor", "link", "--listen", linkAddr, "--secret-file", k)
	relay := newFlipRelay(t, linkAddr, 0)
	con := start(t, "connector", "link", "--connect", relay.ln.Addr().String(), "--secret-file", k)
	con.waitLog("link up", 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	con.kill()
	rec.waitLog("transport lost", 40*time.Second)
	relay.mu.Lock()
	recorded := append([]byte(nil), relay.record...)
	relay.mu.Unlock()
	require.NotEmpty(t, recorded)

	// Play the connector's recorded bytes to the receptor again.
	c, err := net.Dial("tcp", linkAddr)
	require.NoError(t, err)
	defer c.Close()
	go func() { _, _ = io.Copy(io.Discard, c) }()
	_, err = c.Write(recorded)
	require.NoError(t, err)
	time.Sleep(3 * time.Second)
	assert.Equal(t, 1, rec.countLog("link up"), "the replay established nothing")
	assert.Zero(t, rec.countLog("link resumed"))
}

func TestAllowRefusalReachesClient(t *testing.T) {
	srv := transferServer(t)
	other := transferServer(t)
	lport, lport2 := freePort(t), freePort(t)
	rec, _, _ := tcpPair(t,
		[]string{"--allow", fmt.Sprintf("127.0.0.1:%d", srv)},
		[]string{"-L", fmt.Sprintf("%d:127.0.0.1:%d", lport, srv), "-L", fmt.Sprintf("%d:127.0.0.1:%d", lport2, other)})
	require.NoError(t, transfer(addr(lport), 64<<10, 64<<10, 1), "an allowed destination works")
	expectTurnedAway(t, addr(lport2))
	rec.waitLog("not allowed here", 5*time.Second)
}
