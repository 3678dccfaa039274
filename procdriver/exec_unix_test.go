//go:build unix

package procdriver

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExecEchoesAndLogsStderr(t *testing.T) {
	var logs testutil.LogBuffer
	d := NewExec("echo starting >&2; cat", slog.New(slog.NewTextHandler(&logs, nil)))
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, err := d.Open(ctx)
	require.NoError(t, err)
	_, err = tr.Write([]byte("round trip"))
	require.NoError(t, err)
	buf := make([]byte, 10)
	_, err = io.ReadFull(tr, buf)
	require.NoError(t, err)
	assert.Equal(t, "round trip", string(buf))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `msg="exec: stderr" line=starting`) }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, "exec echo starting >&2; cat", d.String())
}

func TestExecCloseStopsTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// The shell starts a child of its own and waits: Close must stop both.
	d := NewExec("sleep 60 & echo $! > "+pidFile+"; wait", slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, err := d.Open(ctx)
	require.NoError(t, err)
	var pid int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil && pid > 0
	}, 5*time.Second, 10*time.Millisecond)
	start := time.Now()
	require.NoError(t, tr.Close())
	assert.Less(t, time.Since(start), 2*time.Second, "SIGTERM suffices")
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, 5*time.Second, 10*time.Millisecond,
		"the command's own child outlived Close")
	require.NoError(t, d.Close())
	_, err = d.Open(ctx)
	assert.ErrorIs(t, err, ErrDriverClosed)
}

func TestExecRestartsWithBackoff(t *testing.T) {
	var logs testutil.LogBuffer
	d := NewExec("echo bye; exit 3", slog.New(slog.NewTextHandler(&logs, nil)))
	d.MinBackoff, d.MaxBackoff = 100*time.Millisecond, 400*time.Millisecond
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var opened []time.Time
	for range 5 {
		tr, err := d.Open(ctx)
		require.NoError(t, err)
		opened = append(opened, time.Now())
		out, err := io.ReadAll(tr) // to the end: the command exited
		require.NoError(t, err)
		assert.Equal(t, "bye\n", string(out), "what the command wrote before it exited is read")
		assert.Eventually(t, func() bool { _, err := tr.Write([]byte("x")); return err != nil }, 5*time.Second, 5*time.Millisecond,
			"writes fail once the command exited")
		tr.Close()
	}
	// Delays before the restarts: 100, 200, 400, 400 ms, less the
	// time each command ran.
	for i, want := range []time.Duration{100, 200, 400, 400} {
		gap := opened[i+1].Sub(opened[i])
		assert.GreaterOrEqual(t, gap, want*time.Millisecond*9/10, "restart %d", i+1)
		assert.Less(t, gap, want*time.Millisecond+time.Second, "restart %d", i+1)
	}
	assert.Contains(t, logs.String(), "exit status 3")
	assert.Equal(t, 4, strings.Count(logs.String(), "exec: restarting the command"))

	// Open waits for its context during the delay.
	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	_, err := d.Open(short)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
