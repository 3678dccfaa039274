package main

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/peers"
)

// The config file holds a hub: its listener, its peers file and forwards
// addressed to its peers.
func TestConfigHoldsAHub(t *testing.T) {
	clearEnv(t)
	path := writeConfig(t, `
listen: 127.0.0.1:9000
peers: /etc/sockmux/peers
name: hub
local:
  - 2217:127.0.0.1:22@cabinet-17
  - 5353:10.0.0.1:53/udp@lab_2
dynamic: [1080]
`)
	plan, err := planFromArgs([]string{"--config", path})
	require.NoError(t, err)
	assert.Equal(t, "/etc/sockmux/peers", plan.transport.peers)
	require.Len(t, plan.forwards, 3)
	assert.Equal(t, "cabinet-17", plan.forwards[0].Peer)
	assert.Equal(t, "lab_2", plan.forwards[1].Peer)
	assert.Equal(t, "udp", plan.forwards[1].Network)
	require.NoError(t, checkHub(plan))
}

func TestHubChecksAndSplitsForwards(t *testing.T) {
	clearEnv(t)
	for args, want := range map[string]string{
		"--peers p --connect h:1":                          "--peers needs --listen",
		"--peers p --listen h:1 --secret-file k":           "each peer's key is in the peers file",
		"--peers p --listen h:1 --wire delegate":           "sockmux's wire only",
		"--peers p --listen h:1 --comm /dev/ttyUSB0":       "--peers goes with --listen only",
		"--peers p --listen h:1 --half-duplex --baud 9600": "--half-duplex is for a serial line",
	} {
		plan, err := planFromArgs(strings.Fields(args))
		require.NoError(t, err, args)
		assert.ErrorContains(t, checkHub(plan), want, args)
	}
	tb, err := peers.Parse("cab-1 "+strings.Repeat("ab", 32)+"\n", "peers", t.TempDir())
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	for spec, want := range map[string]string{
		"-L 8080:h:80":        "add @PEER",
		"-L 8080:h:80@nobody": `no peer "nobody" in peers`,
		"--port 9023":         "a hub's entrances are -L SPEC@PEER",
	} {
		plan, err := planFromArgs(append([]string{"--listen", "h:1", "--peers", "p"}, strings.Fields(spec)...))
		require.NoError(t, err, spec)
		_, _, err = hubForwards(plan, hubNames{table: tb}, true, log)
		assert.ErrorContains(t, err, want, spec)
	}
	plan, err := planFromArgs([]string{"--listen", "h:1", "--peers", "p", "-L", "8080:h:80@CAB-1", "-R", "9090:h:90@cab-1", "-D", "1080"})
	require.NoError(t, err)
	byPeer, dynamic, err := hubForwards(plan, hubNames{table: tb}, true, log)
	require.NoError(t, err)
	require.Len(t, byPeer["cab-1"], 2)
	assert.Equal(t, "", byPeer["cab-1"][0].Peer, "the peer's own forwarder runs it")
	assert.Equal(t, []forward.Forward{{Kind: forward.Dynamic, Network: "tcp", Bind: "127.0.0.1:1080"}}, dynamic)
	// A plain end refuses a forward addressed to a peer.
	plan, err = planFromArgs([]string{"--connect", "h:1", "-L", "8080:h:80@cab-1"})
	require.NoError(t, err)
	assert.ErrorContains(t, runPlan(plan), "only a hub")
}
