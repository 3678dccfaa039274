//go:build linux

package serialport

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/link"
)

// TestSetSpeed switches a port's speed under an open transport: the port
// and the driver report it, the device runs at it, reopens keep it, and a
// speed the mode cannot have is refused with the old one kept.
func TestSetSpeed(t *testing.T) {
	c, a, _ := startCable(t, 115200)
	d, err := New(a, DefaultMode(), nil)
	require.NoError(t, err)
	defer d.Close()
	assert.Equal(t, []int{9600, 921600, 4000000}, d.AcceptedSpeeds([]int{9600, 921600, 4000000}))
	assert.Equal(t, 115200, d.Speed(), "AcceptedSpeeds puts the speed back")

	tr, err := d.Open(context.Background())
	require.NoError(t, err)
	p := d.openPort()
	require.NotNil(t, p)
	require.NoError(t, d.SetSpeed(921600))
	assert.Equal(t, 921600, d.Speed())
	assert.Equal(t, 921600, p.Mode().Baud)
	assert.Equal(t, link.Properties{LineRate: 92160}, d.Properties())
	assert.Equal(t, "serial "+a+" 921600 8N1", d.String())
	f, err := os.OpenFile(a, os.O_RDWR, 0)
	require.NoError(t, err)
	got, ok := actualSpeed(f)
	_ = f.Close()
	require.True(t, ok)
	assert.Equal(t, 921600, got, "the device runs at the new speed")

	err = d.SetSpeed(-5)
	assert.ErrorIs(t, err, ErrUnsupported)
	assert.Equal(t, 921600, d.Speed(), "a refused speed changes nothing")

	// Reopened after an unplug: at the speed set last.
	require.NoError(t, tr.Close())
	require.NoError(t, c.Unplug(0))
	require.NoError(t, c.Replug())
	tr2, err := d.Open(context.Background())
	require.NoError(t, err)
	defer tr2.Close()
	p2 := d.openPort()
	require.NotNil(t, p2)
	assert.Equal(t, 921600, p2.Mode().Baud)

	// A closed port refuses; the driver still remembers the speed.
	require.NoError(t, tr2.Close())
	assert.ErrorIs(t, p2.SetSpeed(230400), ErrClosed)
	require.NoError(t, d.SetSpeed(230400))
	assert.Equal(t, 230400, d.Speed())
}
