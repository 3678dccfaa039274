//go:build unix

package tests

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/internal/testutil"
)

// goSource is about n bytes of Go's own source: text this project did
// not write, compressible as source code is.
func goSource(t *testing.T, n int) []byte {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	root := filepath.Join(strings.TrimSpace(string(out)), "src", "net", "http")
	var files []string
	require.NoError(t, filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && strings.HasSuffix(p, ".go") {
			files = append(files, p)
		}
		return nil
	}))
	sort.Strings(files)
	var b []byte
	for _, f := range files {
		if len(b) >= n {
			break
		}
		d, err := os.ReadFile(f)
		require.NoError(t, err)
		b = append(b, d...)
	}
	if len(b) < n {
		t.Skipf("only %d bytes of Go source under %s", len(b), root)
	}
	return b[:n]
}

// compressionOf reads what a link sent, before and after compression.
func compressionOf(t *testing.T, sock string) (plain, wire float64) {
	t.Helper()
	code, out := run(t, 10*time.Second, "status", "--json", "--control", sock)
	require.Equal(t, 0, code, out)
	var st struct {
		PayloadOut    float64 `json:"payload_out"`
		CompressedOut float64 `json:"compressed_out"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	return st.PayloadOut, st.CompressedOut
}

// Source code downloaded through a forward over the 115200-baud cable
// arrives intact, compressed on the line when both ends allow it (the
// default) and as it is when one end says --compress off.
func TestSerialCompressedDownload(t *testing.T) {
	skipWithoutPtys(t)
	for _, tc := range []struct {
		name     string
		argsB    []string
		minRatio float64
	}{
		{"default", nil, 2.5},
		{"peer off", []string{"--compress", "off"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			text := goSource(t, 192<<10)
			srv := testutil.Port(testutil.ServeLoopback(t, func(c net.Conn) {
				defer c.Close()
				_, _ = c.Write(text)
			}))
			_, pathA, pathB := startCable(t)
			port := freePort(t)
			sock := filepath.Join(controlDir(t), "b.sock")
			a := start(t, "link A", "link", "--comm", pathA, "-L", fmt.Sprintf("%d:127.0.0.1:%d", port, srv))
			b := start(t, "link B", append([]string{"link", "--comm", pathB, "--control", sock}, tc.argsB...)...)
			a.waitLog("link up", 15*time.Second)
			b.waitLog("link up", 15*time.Second)
			waitListening(t, addr(port), 5*time.Second)
			c, err := net.DialTimeout("tcp", addr(port), 10*time.Second)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetReadDeadline(time.Now().Add(lineTimeFor(int64(len(text)), 0.5))))
			start := time.Now()
			got, err := io.ReadAll(c)
			require.NoError(t, err)
			took := time.Since(start)
			require.Equal(t, len(text), len(got))
			require.Equal(t, sha256.Sum256(text), sha256.Sum256(got), "sha256")
			plain, wire := compressionOf(t, sock)
			rate := float64(len(text)) / took.Seconds()
			t.Logf("%d bytes of Go source in %v: %.0f B/s, %.2f x the line; compressed %.2fx", len(text),
				took.Round(time.Millisecond), rate, rate/lineRate, plain/wire)
			if tc.minRatio > 0 {
				assert.Greater(t, plain/wire, tc.minRatio, "compressed on the line")
				assert.Greater(t, rate, 1.5*lineRate, "faster than the line")
			} else {
				assert.Equal(t, plain, wire, "no codec bytes, no compression")
			}
			assertSessionKept(t, a, b)
		})
	}
}
