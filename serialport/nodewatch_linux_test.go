package serialport

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openPtyLink opens a pseudo-terminal pair and a symbolic link to its
// slave, as the virtual cable makes them.
func openPtyLink(t *testing.T) (master *os.File, link string) {
	t.Helper()
	m, s, err := pty.Open()
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close(); _ = s.Close() })
	link = filepath.Join(t.TempDir(), "tty")
	require.NoError(t, os.Symlink(s.Name(), link))
	return m, link
}

// readErrAfter starts a Read on p and returns a channel with its error.
func readErrAfter(p *Port) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 16))
		done <- err
	}()
	return done
}

func TestIdlePortWaitsWithoutDeadline(t *testing.T) {
	// An idle port must not wake to poll: on Linux the node watch stands in
	// for the pollInterval deadline.
	_, link := openPtyLink(t)
	p := mustOpen(t, link, DefaultMode())
	require.NotNil(t, p.sys.watch, "the node watch is running")
	assert.True(t, p.ioDeadline().IsZero(), "blocked I/O has no deadline")
}

func TestNodeWatchNoticesReplacedDeviceAtOnce(t *testing.T) {
	// The old device reports nothing; the watch sees the link replaced
	// well before a pollInterval would have passed.
	_, link := openPtyLink(t)
	m2, s2, err := pty.Open()
	require.NoError(t, err)
	defer m2.Close()
	defer s2.Close()
	p := mustOpen(t, link, DefaultMode())
	done := readErrAfter(p)
	time.Sleep(50 * time.Millisecond) // Read is waiting
	changed := time.Now()
	require.NoError(t, os.Remove(link))
	require.NoError(t, os.Symlink(s2.Name(), link))
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrDisconnected)
		assert.Less(t, time.Since(changed), pollInterval/3, "noticed at the change, not at the next poll")
	case <-time.After(2 * time.Second):
		t.Fatal("Read did not notice the device changed")
	}
	_, err = p.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrDisconnected, "writes fail too")
}

func TestNodeWatchNoticesRemovedNode(t *testing.T) {
	_, link := openPtyLink(t)
	p := mustOpen(t, link, DefaultMode())
	done := readErrAfter(p)
	time.Sleep(50 * time.Millisecond)
	removed := time.Now()
	require.NoError(t, os.Remove(link))
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrDisconnected)
		assert.Contains(t, err.Error(), "node is gone")
		assert.Less(t, time.Since(removed), pollInterval/3)
	case <-time.After(2 * time.Second):
		t.Fatal("Read did not notice the node removed")
	}
}

func TestReadNoticesHangup(t *testing.T) {
	// The master closing hangs the slave up (as unplugging a USB adapter
	// does): the kernel reports it to the blocked Read, with no deadline.
	m, link := openPtyLink(t)
	p := mustOpen(t, link, DefaultMode())
	done := readErrAfter(p)
	time.Sleep(50 * time.Millisecond)
	closed := time.Now()
	require.NoError(t, m.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrDisconnected)
		assert.Less(t, time.Since(closed), pollInterval/3)
	case <-time.After(2 * time.Second):
		t.Fatal("Read did not notice the hang-up")
	}
}

func TestCloseEndsNodeWatch(t *testing.T) {
	_, link := openPtyLink(t)
	p, err := OpenPort(link, DefaultMode())
	require.NoError(t, err)
	w := p.sys.watch
	require.NotNil(t, w)
	require.NoError(t, p.Close())
	select {
	case <-w.done:
	default:
		t.Fatal("the watch goroutine still runs after Close")
	}
}
