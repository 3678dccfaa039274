package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/forward"
)

func TestDelegateTranslatesTheManualExamples(t *testing.T) {
	for _, tc := range []struct {
		params []string
		want   string
	}{
		{[]string{"SERVER=sockmux", "-PhostX:9000", "PORT=9023", "SERVER=telnet://hostX,-in"},
			"sockmux link --listen hostX:9000 --port 9023 --server telnet://hostX"},
		{[]string{"SERVER=sockmux://hostX:9000", "PORT=hostY:9023"},
			"sockmux link --connect hostX:9000 --port hostY:9023"},
		{[]string{"SERVER=sockmux://hostX:9000", "SERVER=telnet,-in"},
			"sockmux link --connect hostX:9000 --server telnet"},
		{[]string{"SERVER=sockmux://hostX:9000", "DEST=hostT:23"},
			"sockmux link --connect hostX:9000 --dest hostT:23"},
		{[]string{"-PhostX:9000", "SERVER=sockmux", "PORT=hostX:53/udp"},
			"sockmux link --listen hostX:9000 --port hostX:53/udp"},
		{[]string{"SERVER=sockmux://hostX:9000", "DEST=hostU:53/udp"},
			"sockmux link --connect hostX:9000 --dest hostU:53/udp"},
		{[]string{"SERVER=sockmux:commin@/tmp/com0", "SERVER=sockmux:commout@/tmp/com1", "PORT=9023"},
			"sockmux link --commin /tmp/com0 --commout /tmp/com1 --port 9023"},
		{[]string{"SERVER=sockmux:comm@/dev/ttyS0", "SERVER=telnet://hostY,-in"},
			"sockmux link --comm /dev/ttyS0 --server telnet://hostY"},
		{[]string{"SERVER=sockmux://hostX:9000", "SERVER=telnet://hostY,-in:-:-P9023", "SERVER=http://hostY,-in:-:-P9080"},
			"sockmux link --connect hostX:9000 --server telnet://hostY:-:-P9023 --server http://hostY:-:-P9080"},
		{[]string{"-P9000", "SERVER=sockmux", "-f", "-vv"},
			"sockmux link --listen :9000 --log-level debug"},
		{[]string{`SERVER="telnet://h:23,-in:-:{10.0.0.0/8,hostA}"`, "SERVER=sockmux://h:1"},
			"sockmux link --connect h:1 --server 'telnet://h:23:-:{10.0.0.0/8,hostA}'"},
	} {
		plan, printOnly, err := planFromDelegate(tc.params)
		if !assert.NoError(t, err, "%v", tc.params) {
			continue
		}
		assert.False(t, printOnly)
		assert.Equal(t, tc.want, plan.equivalent, "%v", tc.params)
	}
}

func TestDelegatePlanMatchesLinkFlags(t *testing.T) {
	plan, printOnly, err := planFromDelegate([]string{"--print", "SERVER=sockmux://h:1", "--udp-timeout", "7s",
		"PORT=127.0.0.1:9023,9080", "SERVER=telnet://hostY,-in:-:-P9023", "DEST=hostT:23", "--log-level=warn"})
	require.NoError(t, err)
	assert.True(t, printOnly)
	assert.Equal(t, transportSpec{connect: "h:1"}, plan.transport)
	assert.Equal(t, 7*time.Second, plan.opts.udpTimeout)
	assert.Equal(t, "warn", plan.opts.logLevel)
	assert.Equal(t, 30*time.Second, plan.opts.linkWait, "defaults as in sockmux link")
	assert.Equal(t, 115200, plan.opts.serial.Baud)
	require.Len(t, plan.forwards, 2)
	assert.Equal(t, forward.Forward{Kind: forward.Entrance, Network: "tcp", Bind: "127.0.0.1:9080"}, plan.forwards[1])
	require.Len(t, plan.rules, 2)
	assert.Equal(t, "tcp://hostY:23:-:-P9023", plan.rules[0].String())
	assert.Equal(t, "tcp://hostT:23", plan.rules[1].String())
	assert.Equal(t, "sockmux link --connect h:1 --port 127.0.0.1:9023,9080 --server telnet://hostY:-:-P9023 --dest hostT:23 --udp-timeout 7s --log-level=warn", plan.equivalent)
}

func TestDelegateParameterFile(t *testing.T) {
	dir := t.TempDir()
	inner := filepath.Join(dir, "inner.cnf")
	require.NoError(t, os.WriteFile(inner, []byte("DEST=hostT:23\n"), 0o600))
	outer := filepath.Join(dir, "sockmux.cnf")
	require.NoError(t, os.WriteFile(outer, []byte("# the tunnel\nSERVER=sockmux://hostX:9000   PORT=9023 # an entrance\n+="+inner+"\n"), 0o600))
	plan, _, err := planFromDelegate([]string{"+=" + outer, "-vd"})
	require.NoError(t, err)
	assert.Equal(t, "sockmux link --connect hostX:9000 --port 9023 --dest hostT:23 --log-level debug", plan.equivalent)
	loop := filepath.Join(dir, "loop.cnf")
	require.NoError(t, os.WriteFile(loop, []byte("+="+loop), 0o600))
	_, _, err = planFromDelegate([]string{"+=" + loop})
	assert.ErrorContains(t, err, "nest too deep")
}

func TestDelegateErrorsNameTheParameter(t *testing.T) {
	for _, tc := range []struct {
		params []string
		want   string
	}{
		{[]string{"SERVER=sockmux://h:1", "FSV=sslway"}, "DeleGate parameter FSV=sslway is not supported"},
		{[]string{"SERVER=sockmux://h:1", "MOUNT=/ http://x/"}, "MOUNT=/ http://x/"},
		{[]string{"SERVER=sockmux://h:1", "+=/nonexistent/config.cnf"}, "+=/nonexistent/config.cnf: open"},
		{[]string{"SERVER=sockmux://h:1", "-r"}, `"-r" is not a DeleGate parameter`},
		{[]string{"SERVER=sockmux://h:1", "SERVER=telnet://x"}, `add ",-in"`},
		{[]string{"SERVER=sockmux://h:1", "SERVER=telnet://x,-in(+=config.cnf)"}, "cannot run a DeleGate with options"},
		{[]string{"SERVER=sockmux://h:1", "SERVER=ftp,-in"}, `no built-in "ftp" proxy`},
		{[]string{"SERVER=sockmux://h:1", "PORT=abc"}, "--port"},
		{[]string{"SERVER=sockmux://h:1", "DEST=x"}, "--dest"},
		{[]string{"SERVER=sockmux"}, "needs -Phost:port"},
		{[]string{"-P9000"}, "goes with SERVER=sockmux"},
		{[]string{"-P9000", "SERVER=sockmux://h:1"}, "not with SERVER=sockmux://h:1"},
		{[]string{"-P9000,9001", "SERVER=sockmux"}, "one port"},
		{[]string{"-P9000", "-P9001", "SERVER=sockmux"}, "a second -P"},
		{[]string{"PORT=9023"}, "no SockMux tunnel"},
		{[]string{"SERVER=sockmux://h"}, "want SERVER=sockmux://host:port"},
		{[]string{"SERVER=sockmux:tty@/dev/x"}, `unknown commtype "tty"`},
		{[]string{"SERVER=sockmux:commin@/a"}, "needs SERVER=sockmux:commout@PATH"},
		{[]string{"SERVER=sockmux:commout@/a"}, "needs SERVER=sockmux:commin@PATH"},
		{[]string{"SERVER=sockmux://h:1", "SERVER=sockmux:comm@/dev/x"}, "more than one SockMux tunnel"},
		{[]string{"SERVER=sockmux://h:1", "SERVER=sockmux://h:2"}, "given twice"},
		{[]string{"SERVER=sockmux://h:1", "--frobnicate", "1"}, "unknown option --frobnicate"},
		{[]string{"SERVER=sockmux://h:1", "--baud"}, "needs a value"},
		{[]string{"SERVER=sockmux://h:1", "--udp-timeout", "soon"}, "udp-timeout"},
		{[]string{"SERVER=sockmux://h:1", "--udp-timeout", "0s"}, "must be positive"},
	} {
		_, _, err := planFromDelegate(tc.params)
		if assert.Error(t, err, "%v", tc.params) {
			assert.Contains(t, err.Error(), tc.want, "%v", tc.params)
		}
	}
}

// The commands: a host on each item of a port list, in both
// syntaxes, gives one entrance per item on its own address.
func TestPortListWithAHostOnEachItem(t *testing.T) {
	clearEnv(t)
	want := []forward.Forward{
		{Kind: forward.Entrance, Network: "tcp", Bind: "127.0.0.1:9011"},
		{Kind: forward.Entrance, Network: "tcp", Bind: "127.0.0.2:9012"},
		{Kind: forward.Entrance, Network: "udp", Bind: "[::1]:9013"},
		{Kind: forward.Entrance, Network: "tcp", Bind: "[::1]:9020"},
		{Kind: forward.Entrance, Network: "tcp", Bind: "[::1]:9021"},
	}
	list := "127.0.0.1:9011,127.0.0.2:9012,[::1]:9013/udp,9020-9021"
	plan, err := planFromArgs([]string{"--listen", "127.0.0.1:9000", "--port", list})
	require.NoError(t, err)
	assert.Equal(t, want, plan.forwards)

	plan, _, err = planFromDelegate([]string{"-P127.0.0.1:9000", "SERVER=sockmux", "PORT=" + list})
	require.NoError(t, err)
	assert.Equal(t, want, plan.forwards)
	assert.Equal(t, "sockmux link --listen 127.0.0.1:9000 --port '"+list+"'", plan.equivalent)

	_, _, err = planFromDelegate([]string{"-P127.0.0.1:9000", "SERVER=sockmux", "PORT=127.0.0.1:9011,127.0.0.1:90x"})
	assert.EqualError(t, err, `--port: port "127.0.0.1:9011,127.0.0.1:90x": item "127.0.0.1:90x": "90x" is not a port number (1-65535)`)
}

// TestDelegateBoolOptionAlone: a bool option takes no value, as in sockmux
// link: --insecure alone is --insecure=true, and the next argument is a
// parameter of its own.
func TestDelegateBoolOptionAlone(t *testing.T) {
	plan, _, err := planFromDelegate([]string{"SERVER=sockmux", "-P0.0.0.0:9000", "--insecure", "PORT=9023"})
	require.NoError(t, err)
	assert.True(t, plan.opts.insecure)
	require.Len(t, plan.forwards, 1, "PORT= after --insecure is a parameter")
	plan, _, err = planFromDelegate([]string{"SERVER=sockmux", "-P0.0.0.0:9000", "--insecure"})
	require.NoError(t, err, "a bool option last")
	assert.True(t, plan.opts.insecure)
}
