//go:build unix

package tests

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeFile writes a config file, replacing it whole (as an editor
// would).
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, []byte(text), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// expectNotListening waits until nothing accepts connections at addr.
func expectNotListening(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections after %v", addr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A config file with two forwards and the transport: both forwards carry
// a transfer, checked by sha256.
func TestConfigFileTwoForwards(t *testing.T) {
	t.Parallel()
	srv1, srv2 := transferServer(t), transferServer(t)
	linkPort, p1, p2 := freePort(t), freePort(t), freePort(t)
	path := filepath.Join(t.TempDir(), "a.yaml")
	writeFile(t, path, fmt.Sprintf(`# link A
listen: 127.0.0.1:%d
local:
  - %d:127.0.0.1:%d
  - 127.0.0.1:%d:127.0.0.1:%d
dead-timeout: 20s
log-level: info
`, linkPort, p1, srv1, p2, srv2))
	a := start(t, "link A", "link", "--config", path)
	b := start(t, "link B", "link", "--connect", addr(linkPort))
	a.waitLog("link up", 10*time.Second)
	b.waitLog("link up", 10*time.Second)
	a.waitLog(`msg="configuration file read"`, time.Second)
	errs := make(chan error, 2)
	go func() { errs <- transfer(addr(p1), 4<<20, 4<<20, 1) }()
	go func() { errs <- transfer(addr(p2), 4<<20, 4<<20, 2) }()
	for range 2 {
		require.NoError(t, <-errs)
	}
}

// One run shows every level of precedence: -L comes from the command
// line although the environment and the file name others; -D from the
// environment although the file names another; the transport from the
// file; the log level is the default (no debug lines).
func TestConfigPrecedenceEndToEnd(t *testing.T) {
	srv := transferServer(t)
	linkPort := freePort(t)
	lFile, lEnv, lFlag := freePort(t), freePort(t), freePort(t)
	dFile, dEnv := freePort(t), freePort(t)
	path := filepath.Join(t.TempDir(), "a.yaml")
	writeFile(t, path, fmt.Sprintf("listen: 127.0.0.1:%d\nlocal: [%d:127.0.0.1:%d]\ndynamic: [%d]\n", linkPort, lFile, srv, dFile))
	t.Setenv("SOCKMUX_LOCAL", fmt.Sprintf("%d:127.0.0.1:%d", lEnv, srv))
	t.Setenv("SOCKMUX_DYNAMIC", fmt.Sprint(dEnv))
	a := start(t, "link A", "link", "--config", path, "-L", fmt.Sprintf("%d:127.0.0.1:%d", lFlag, srv))
	os.Unsetenv("SOCKMUX_LOCAL")
	os.Unsetenv("SOCKMUX_DYNAMIC")
	b := start(t, "link B", "link", "--connect", addr(linkPort))
	a.waitLog("link up", 10*time.Second)
	b.waitLog("link up", 10*time.Second)
	require.NoError(t, transfer(addr(lFlag), 1<<20, 1<<20, 3), "the flag's -L")
	waitListening(t, addr(dEnv), 5*time.Second)
	for _, p := range []int{lFile, lEnv, dFile} {
		expectNotListening(t, addr(p), time.Second)
	}
	assert.Contains(t, a.logText(), `msg="flags or SOCKMUX_* variables override the configuration file" keys="local, dynamic"`)
	assert.NotContains(t, a.logText(), "level=DEBUG", "the default log level")
}

// A bad file stops sockmux at once with the key and the line, before it
// opens anything.
func TestConfigErrorsEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ text, want string }{
		{"listen: 127.0.0.1:1\nlocal: [8080:127.0.0.1:80]\nfrobnicate: true\n", `a.yaml:3: key "frobnicate": unknown key`},
		{"listen: 127.0.0.1:1\nbaud: 115200\nhandshake-timeout: soon\n", `a.yaml:3: key "handshake-timeout": "soon" is not a duration`},
		{"listen: 127.0.0.1:1\nremote:\n  - 8080:127.0.0.1:80\n  - 70000:127.0.0.1:80\n", `a.yaml:4: key "remote": forward "70000:127.0.0.1:80"`},
	} {
		path := filepath.Join(dir, "a.yaml")
		writeFile(t, path, tc.text)
		args := []string{"link", "--config", path}
		code, out := run(t, 10*time.Second, args...)
		oneLineError(t, code, out, tc.want, args)
	}
}
