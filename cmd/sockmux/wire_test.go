package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDelegateWireParam(t *testing.T) {
	plan, _, err := planFromDelegate([]string{"SERVER=sockmux://hostX:9000", "PORT=9023", "WIRE=delegate"})
	require.NoError(t, err)
	assert.Equal(t, "delegate", plan.opts.wire)
	assert.Contains(t, plan.equivalent, "--wire delegate")
	require.NoError(t, checkWire(plan, false))

	plan, _, err = planFromDelegate([]string{"--wire", "sockmux", "SERVER=sockmux://hostX:9000", "WIRE=delegate"})
	require.NoError(t, err)
	assert.Equal(t, "sockmux", plan.opts.wire, "--wire wins over WIRE=")
}

func TestCheckWireRefuses(t *testing.T) {
	for _, tc := range []struct {
		params []string
		keyed  bool
		want   string
	}{
		{[]string{"SERVER=sockmux://h:1", "WIRE=delegate"}, true, "--secret-file cannot be used"},
		{[]string{"SERVER=sockmux", "-P9000", "WIRE=delegate"}, false, "no authentication"},
		{[]string{"SERVER=sockmux://h:1", "PORT=9053/udp", "WIRE=delegate"}, false, "only TCP"},
		{[]string{"--compress", "best", "SERVER=sockmux://h:1", "WIRE=delegate"}, false, "not compressed"},
		{[]string{"--half-duplex=true", "SERVER=sockmux:comm@/dev/ttyS0", "WIRE=delegate"}, false, "does not take turns"},
	} {
		plan, _, err := planFromDelegate(tc.params)
		require.NoError(t, err, tc.params)
		err = checkWire(plan, tc.keyed)
		require.Error(t, err, tc.params)
		assert.Contains(t, err.Error(), tc.want)
	}
	// A wire sockmux does not speak is refused as the value is read.
	_, _, err := planFromDelegate([]string{"SERVER=sockmux://h:1", "WIRE=telnet"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `--wire "telnet": want one of sockmux, delegate`)
	plan, _, err := planFromDelegate([]string{"SERVER=sockmux", "-P127.0.0.1:9000", "WIRE=delegate"})
	require.NoError(t, err)
	assert.NoError(t, checkWire(plan, false), "loopback receptor")
}
