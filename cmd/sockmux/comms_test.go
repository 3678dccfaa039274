package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// One --comm is a plain end, as ever; several, a NAME=PATH one, or
// --comm-glob make a hub of ports; the config file's comm list and the
// variable give the same.
func TestCommPlan(t *testing.T) {
	clearEnv(t)
	plan, err := planFromArgs([]string{"--comm", "/dev/ttyUSB0"})
	require.NoError(t, err)
	assert.Equal(t, "/dev/ttyUSB0", plan.transport.comm)
	assert.False(t, plan.transport.portHub())

	plan, err = planFromArgs([]string{"--comm", "/dev/ttyUSB0", "--comm", "lab=/dev/ttyUSB1,odd"})
	require.NoError(t, err)
	assert.Equal(t, "", plan.transport.comm)
	assert.Equal(t, []string{"/dev/ttyUSB0", "lab=/dev/ttyUSB1,odd"}, plan.transport.ports, "each value whole")
	assert.True(t, plan.transport.portHub())

	plan, err = planFromArgs([]string{"--comm", "lab=/dev/ttyUSB1"})
	require.NoError(t, err)
	assert.True(t, plan.transport.portHub(), "a named port is a peer")
	plan, err = planFromArgs([]string{"--comm-glob", "/dev/serial/by-id/*"})
	require.NoError(t, err)
	assert.True(t, plan.transport.portHub())

	path := writeConfig(t, "comm:\n  - /dev/ttyUSB0\n  - b=/dev/ttyUSB1\ncomm-glob: /dev/serial/by-id/*\n")
	plan, err = planFromArgs([]string{"--config", path})
	require.NoError(t, err)
	assert.Equal(t, []string{"/dev/ttyUSB0", "b=/dev/ttyUSB1"}, plan.transport.ports)
	assert.Equal(t, "/dev/serial/by-id/*", plan.transport.commGlob)

	t.Setenv("SOCKMUX_COMM", "/dev/tty,with,commas")
	plan, err = planFromArgs(nil)
	require.NoError(t, err)
	assert.Equal(t, "/dev/tty,with,commas", plan.transport.comm)
}

func TestCommPortsNames(t *testing.T) {
	dir := t.TempDir()
	eq := filepath.Join(dir, "odd=name")
	require.NoError(t, os.WriteFile(eq, nil, 0o600))
	ports, err := commPorts([]string{"/dev/ttyUSB0", "/dev/other/ttyUSB0", "ttyUSB0-2=/dev/x", "usb:0403:6001:A10K3ZP", eq, `\\.\COM3`})
	require.NoError(t, err)
	var names, paths []string
	for _, p := range ports {
		names = append(names, p.name)
		paths = append(paths, p.path)
	}
	assert.Equal(t, []string{"ttyUSB0", "ttyUSB0-3", "ttyUSB0-2", "usb-0403-6001-A10K3ZP", "odd-name", "COM3"}, names)
	assert.Equal(t, []string{"/dev/ttyUSB0", "/dev/other/ttyUSB0", "/dev/x", "usb:0403:6001:A10K3ZP", eq, `\\.\COM3`}, paths,
		"a file whose name has = is a path")

	for specs, want := range map[[2]string]string{
		{"/dev/a", "/dev/a"}:         "--comm /dev/a is given twice",
		{"x=/dev/a", "X=/dev/b"}:     "the name X is /dev/a's already",
		{"-x=/dev/a", "/dev/b"}:      "starts with '-'",
		{"lab=/dev/a", "lab=/dev/a"}: "given twice",
	} {
		_, err := commPorts(specs[:])
		assert.ErrorContains(t, err, want, specs)
	}
}

// What a hub of ports refuses, with the reason.
func TestCheckPorts(t *testing.T) {
	clearEnv(t)
	for args, want := range map[string][]string{
		"cannot also listen":        {"--comm", "/dev/a", "--comm", "/dev/b", "--listen", "127.0.0.1:1", "--peers", "p"},
		"give no other transport":   {"--comm", "/dev/a", "--comm", "/dev/b", "--connect", "h:1"},
		"--wire delegate takes one": {"--comm", "/dev/a", "--comm", "/dev/b", "--wire", "delegate"},
		"--baud-max 9600 is below":  {"--comm", "/dev/a", "--comm", "/dev/b", "--baud", "auto", "--baud-max", "9600"},
		`no port called "nobody"`:   {"--comm", "/dev/a", "--comm", "/dev/b", "-L", "1:h:1@nobody"},
		"on a hub, a forward names": {"--comm", "/dev/a", "--comm", "/dev/b", "-L", "1:h:1"},
	} {
		plan, err := planFromArgs(want)
		require.NoError(t, err, want)
		err = runPlan(plan)
		assert.ErrorContains(t, err, args, want)
	}
}
