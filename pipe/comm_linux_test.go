package pipe

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// openPty returns a raw pseudo-terminal's master and the slave's path.
func openPty(t *testing.T) (*os.File, string) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	require.NoError(t, unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	require.NoError(t, err)
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	require.NoError(t, err)
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB
	tio.Cflag |= unix.CS8
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	require.NoError(t, unix.IoctlSetTermios(fd, unix.TCSETS, tio))
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { m.Close() })
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

// TestCommPty runs comm over a character device that the poller handles:
// the slave side of a pseudo-terminal.
func TestCommPty(t *testing.T) {
	master, slave := openPty(t)
	d, err := NewComm(slave, nil)
	require.NoError(t, err)
	tr := openWithin(t, d, 5*time.Second)
	exchange(t, tr, master, 256<<10)

	// The other end going away fails a pending Read.
	rch := readAsync(tr, make([]byte, 10))
	notYet(t, rch, 100*time.Millisecond, "Read")
	require.NoError(t, master.Close())
	assert.Error(t, within(t, rch, 2*time.Second, "Read after the master closed").err)
}
