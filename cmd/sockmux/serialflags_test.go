package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/serialport"
)

func TestSerialLineFlags(t *testing.T) {
	clearEnv(t)
	plan, err := planFromArgs([]string{"--comm", "/dev/ttyUSB0", "--dtr", "off", "--rts", "on", "--carrier", "DCD", "--low-latency"})
	require.NoError(t, err)
	assert.Equal(t, serialport.Options{DTR: serialport.LevelOff, RTS: serialport.LevelOn, Carrier: "dcd", LowLatency: true}, plan.opts.serialOpts)

	plan, err = planFromArgs([]string{"--comm", "/dev/ttyUSB0"})
	require.NoError(t, err)
	assert.Equal(t, serialport.Options{}, plan.opts.serialOpts, "defaults: as before")

	for want, args := range map[string][]string{
		`--dtr "low": want one of on, off`:                {"--dtr", "low"},
		`--rts "1": want one of on, off`:                  {"--rts", "1"},
		`--carrier "ri": want one of none, dcd, dsr, cts`: {"--carrier", "ri"},
	} {
		_, err := planFromArgs(append([]string{"--comm", "/dev/ttyUSB0"}, args...))
		assert.EqualError(t, err, want)
	}
}

func TestSerialLineConfigKeys(t *testing.T) {
	clearEnv(t)
	path := writeConfig(t, "comm: /dev/ttyUSB0\ndtr: off\nrts: off\ncarrier: dsr\nlow-latency: true\n")
	plan, err := planFromArgs([]string{"--config", path})
	require.NoError(t, err)
	assert.Equal(t, serialport.Options{DTR: serialport.LevelOff, RTS: serialport.LevelOff, Carrier: "dsr", LowLatency: true}, plan.opts.serialOpts)

	path = writeConfig(t, "comm: /dev/ttyUSB0\ndtr: maybe\n")
	_, err = planFromArgs([]string{"--config", path})
	assert.ErrorContains(t, err, `:2: key "dtr": "maybe": want one of on, off`)

	// The file is read as the flag is: without regard to case.
	path = writeConfig(t, "comm: /dev/ttyUSB0\ndtr: OFF\ncarrier: DSR\nparity: Even\n")
	plan, err = planFromArgs([]string{"--config", path})
	require.NoError(t, err)
	assert.Equal(t, serialport.Options{DTR: serialport.LevelOff, Carrier: "dsr"}, plan.opts.serialOpts)
}
