package testutil

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Ports handed out are distinct, bindable, and never the port a listener
// on port 0 gets: the race that made a test's -L collide with its own
// server.
func TestFreePortAvoidsEphemeralPorts(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := FreePort()
		require.NoError(t, err)
		assert.False(t, seen[p], "port %d handed out twice", p)
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		assert.NotEqual(t, p, Port(ln))
		ln.Close()
		if ephemeralLow()-10000 >= 1000 {
			assert.Less(t, p, ephemeralLow())
		}
	}
}
