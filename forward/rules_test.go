package forward

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/mux"
)

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // Rule.String()
	}{
		{"tcp://127.0.0.1:22", "tcp://127.0.0.1:22"},
		{"127.0.0.1:22", "tcp://127.0.0.1:22"},
		{"telnet://hostY", "tcp://hostY:23"},
		{"telnet://hostY:2323", "tcp://hostY:2323"},
		{"http://hostY/", "tcp://hostY:80"},
		{"tcprelay://hostT:23", "tcp://hostT:23"},
		{"udprelay://hostU:53", "udp://hostU:53"},
		{"hostU:53/udp", "udp://hostU:53"},
		{"[::1]:8080", "tcp://[::1]:8080"},
		{"tcp://[2001:db8::1]:80", "tcp://[2001:db8::1]:80"},
		{"socks", "socks"},
		{"SOCKS5", "socks"},
		{"http", "socks"},
		{"telnet", "telnet"},
		{"telnet,-in", "telnet"},
		{"telnet://hostY:23,-in", "tcp://hostY:23"},
		{"telnet://hostY:23,-in:-:-P9023", "tcp://hostY:23:-:-P9023"},
		{"telnet://hostY:23:-:-P9023,-in", "tcp://hostY:23:-:-P9023"},
		{"http://hostY,-in:-:-P9080", "tcp://hostY:80:-:-P9080"},
		{"tcp://h:22:-:-P9000-9009", "tcp://h:22:-:-P9000-9009"},
		{"tcp://h:22:-:-P9011,-P9012", "tcp://h:22:-:-P9011,-P9012"},
		{"tcp://h:22:-:10.0.0.0/8,hostA", "tcp://h:22:-:10.0.0.0/8,hostA"},
		{"tcp://h:22:-:{10.0.0.0/8,!10.1.0.0/16}", "tcp://h:22:-:10.0.0.0/8,!10.1.0.0/16"},
		{"tcp://h:22:-:-P22,127.0.0.1", "tcp://h:22:-:-P22,127.0.0.1"},
		{"tcp://h:22:-:-P22:-:127.0.0.1", "tcp://h:22:-:-P22,127.0.0.1"},
		{"tcprelay://host:-/", "tcp://host:-"},
		{"tcp://host:+1000", "tcp://host:+1000"},
		{"tcp://host:-1000", "tcp://host:-1000"},
	} {
		r, err := ParseRule(tc.in)
		if assert.NoError(t, err, tc.in) {
			assert.Equal(t, tc.want, r.String(), tc.in)
			assert.Equal(t, tc.in, r.Text)
		}
	}
}

func TestParseRuleErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"tcp://host", "needs a port"},
		{"tcp://:80", "no host"},
		{"ftp", "no built-in \"ftp\" proxy"},
		{"gopherx://h:70", "unknown protocol \"gopherx\""},
		{"tcp://h:99999", "not a port number"},
		{"tcp://h:x", "not a port number"},
		{"tcp://h:+x", "port offset"},
		{"h:80/path", "a path"},
		{"::1:80", "brackets"},
		{"[::1:80", "without ']'"},
		{"telnet://h,-in(+=config.cnf)", "cannot run a DeleGate with options"},
		{"telnet://h,-inx", "unexpected"},
		{"telnet://h,foo", "unexpected \",foo\""},
		{"tcp://h:22:-:", "empty condition"},
		{"tcp://h:22:-:a,,b", "empty item"},
		{"tcp://h:22:-:-Pabc", "entrance port \"-Pabc\""},
		{"tcp://h:22:-:-P90-80", "backwards"},
		{"tcp://h:22:-:-P9011,9012", `condition "9012" is a port, not a client host: each entrance port needs its -P`},
		{"tcp://h:22,-in:-:-P9011,9012-9015", `condition "9012-9015" is a port`},
		{"tcp://h:22:-:-P127.0.0.1:9011", `entrance port "-P127.0.0.1:9011": give the port alone, -P9011`},
		{"tcp://h:22:-:-P[::1]:9011", `give the port alone, -P9011`},
		{"tcp://h:22:-:10.0.0.0/99", "host \"10.0.0.0/99\""},
		{"tcp://h:22:-:bad host", "not a host name"},
		{"socks/udp", "TCP only"},
	} {
		_, err := ParseRule(tc.in)
		if assert.Error(t, err, tc.in) {
			assert.Contains(t, err.Error(), tc.want, tc.in)
			assert.Contains(t, err.Error(), "rule ", tc.in)
		}
	}
}

func TestParseDest(t *testing.T) {
	r, err := ParseDest("hostT:23")
	require.NoError(t, err)
	assert.Equal(t, "tcp://hostT:23", r.String())
	r, err = ParseDest("hostU:53/udp")
	require.NoError(t, err)
	assert.Equal(t, "udp://hostU:53", r.String())
	for _, bad := range []string{"tcp://h:1", "socks", "hostT", "hostT:0"} {
		_, err := ParseDest(bad)
		assert.Error(t, err, bad)
	}
}

func TestRuleMatchesAndTargets(t *testing.T) {
	ctx := context.Background()
	info := func(network string, entrance int, client string) mux.Info {
		return mux.Info{Network: network, Entrance: entrance, Client: client}
	}
	byPort, err := ParseRule("telnet://hostY,-in:-:-P9023")
	require.NoError(t, err)
	assert.True(t, byPort.Matches(ctx, info("tcp", 9023, "10.0.0.1:5000")))
	assert.True(t, byPort.Matches(ctx, info("", 9023, "10.0.0.1:5000")), "no network means tcp")
	assert.False(t, byPort.Matches(ctx, info("tcp", 9080, "10.0.0.1:5000")))
	assert.False(t, byPort.Matches(ctx, info("udp", 9023, "10.0.0.1:5000")))
	tg, err := byPort.Target(info("tcp", 9023, ""))
	require.NoError(t, err)
	assert.Equal(t, Target{Dest: "hostY:23", Rule: "telnet://hostY,-in:-:-P9023"}, tg)

	bySource, err := ParseRule("127.0.0.1:22:-:192.168.0.0/255.255.0.0,!192.168.9.*,::1")
	require.NoError(t, err)
	assert.True(t, bySource.Matches(ctx, info("tcp", 1, "192.168.1.2:5000")))
	assert.True(t, bySource.Matches(ctx, info("tcp", 1, "[::1]:5000")))
	assert.True(t, bySource.Matches(ctx, info("tcp", 1, "[::ffff:192.168.1.2]:5000")), "v4-mapped")
	assert.False(t, bySource.Matches(ctx, info("tcp", 1, "192.168.9.2:5000")), "excluded")
	assert.False(t, bySource.Matches(ctx, info("tcp", 1, "10.0.0.1:5000")))

	both, err := ParseRule("h:1:-:-P10-20,127.0.0.0/8")
	require.NoError(t, err)
	assert.True(t, both.Matches(ctx, info("tcp", 15, "127.0.0.5:1")))
	assert.False(t, both.Matches(ctx, info("tcp", 21, "127.0.0.5:1")))
	assert.False(t, both.Matches(ctx, info("tcp", 15, "10.0.0.5:1")))

	udp, err := ParseDest("hostU:53/udp")
	require.NoError(t, err)
	assert.True(t, udp.Matches(ctx, info("udp", 53, "1.2.3.4:5")))
	assert.False(t, udp.Matches(ctx, info("tcp", 53, "1.2.3.4:5")))

	proxy, err := ParseRule("socks")
	require.NoError(t, err)
	tg, err = proxy.Target(info("tcp", 1, ""))
	require.NoError(t, err)
	assert.Equal(t, ProxySOCKS, tg.Proxy)
	assert.Empty(t, tg.Dest)
}

func TestRelativePorts(t *testing.T) {
	same, err := ParseRule("tcprelay://host:-/")
	require.NoError(t, err)
	tg, err := same.Target(mux.Info{Entrance: 8080})
	require.NoError(t, err)
	assert.Equal(t, "host:8080", tg.Dest)
	up, err := ParseRule("tcp://host:+1000")
	require.NoError(t, err)
	tg, err = up.Target(mux.Info{Entrance: 8080})
	require.NoError(t, err)
	assert.Equal(t, "host:9080", tg.Dest)
	down, err := ParseRule("tcp://host:-9000")
	require.NoError(t, err)
	_, err = down.Target(mux.Info{Entrance: 8080})
	assert.ErrorContains(t, err, "not a port")
	_, err = same.Target(mux.Info{})
	assert.ErrorContains(t, err, "not a port")
}

func TestHostList(t *testing.T) {
	ctx := context.Background()
	hl, err := ParseHostList("localhost")
	require.NoError(t, err)
	assert.True(t, hl.Match(ctx, "127.0.0.1"), "names are looked up")
	assert.False(t, hl.Match(ctx, "10.9.9.9"))

	hl, err = ParseHostList("*")
	require.NoError(t, err)
	assert.True(t, hl.Match(ctx, "10.9.9.9"))

	hl, err = ParseHostList("!127.0.0.2")
	require.NoError(t, err)
	assert.True(t, hl.Match(ctx, "127.0.0.1"), "exclusions alone let others in")
	assert.False(t, hl.Match(ctx, "127.0.0.2"))

	hl, err = ParseHostList("[::1],fe80::/10")
	require.NoError(t, err)
	assert.True(t, hl.Match(ctx, "::1"))
	assert.True(t, hl.Match(ctx, "fe80::1"))
	assert.False(t, hl.Match(ctx, "::2"))
	assert.Equal(t, "[::1],fe80::/10", hl.String())

	hl, err = ParseHostList(".example.invalid")
	require.NoError(t, err)
	assert.True(t, hl.Match(ctx, "a.example.invalid"), "a client given by name matches directly")

	for _, bad := range []string{"", "1.2.3.4/33", "1.2.3.4/255.0.255.0", "a b", "x/y", "[a"} {
		_, err := ParseHostList(bad)
		assert.Error(t, err, bad)
	}
}

func TestParseEntrances(t *testing.T) {
	fs, err := ParseEntrances("9023,9080")
	require.NoError(t, err)
	require.Len(t, fs, 2)
	assert.Equal(t, Forward{Kind: Entrance, Network: "tcp", Bind: "127.0.0.1:9023"}, fs[0])
	assert.Equal(t, "127.0.0.1:9080", fs[1].Bind)
	assert.Equal(t, "--port 127.0.0.1:9023", fs[0].String())

	fs, err = ParseEntrances("hostX:53/udp")
	require.NoError(t, err)
	assert.Equal(t, []Forward{{Kind: Entrance, Network: "udp", Bind: "hostX:53"}}, fs)

	fs, err = ParseEntrances("*:9000-9002,53/udp")
	require.NoError(t, err)
	require.Len(t, fs, 4)
	assert.Equal(t, ":9000", fs[0].Bind)
	assert.Equal(t, ":9002", fs[2].Bind)
	assert.Equal(t, "udp", fs[3].Network)

	fs, err = ParseEntrances("[::1]:8080")
	require.NoError(t, err)
	assert.Equal(t, "[::1]:8080", fs[0].Bind)

	for _, tc := range []struct{ in, want string }{
		{"", "no port (want [HOST:]PORT[/udp][,...])"},
		{"x", "not a port number"},
		{"0", "not a port number"},
		{":80", "empty address"},
		{"::1:80", "brackets"},
		{"1-70000", "not a port number"},
		{"1-2000", "1-2000 is 2000 ports; one --port opens at most 1024"},
		{"9,,10", "an empty item between commas"},
	} {
		_, err := ParseEntrances(tc.in)
		if assert.Error(t, err, tc.in) {
			assert.Contains(t, err.Error(), tc.want, tc.in)
		}
	}
}

// Each item of a --port list may carry its own host and /udp, as in
// DeleGate's PORT=127.0.0.1:17411,127.0.0.1:17412; an item without a
// host takes the one before it.
func TestParseEntrancesHostOnEachItem(t *testing.T) {
	binds := func(fs []Forward) []string {
		var out []string
		for _, f := range fs {
			out = append(out, strings.TrimPrefix(f.String(), "--port "))
		}
		return out
	}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"127.0.0.1:9011,127.0.0.1:9012", []string{"127.0.0.1:9011", "127.0.0.1:9012"}},
		{"9011,127.0.0.2:9012,[::1]:9013/udp", []string{"127.0.0.1:9011", "127.0.0.2:9012", "[::1]:9013/udp"}},
		{"127.0.0.2:9011,9012", []string{"127.0.0.2:9011", "127.0.0.2:9012"}},
		{"*:9011,127.0.0.1:9012,9013/udp", []string{":9011", "127.0.0.1:9012", "127.0.0.1:9013/udp"}},
		{"127.0.0.1:9000-9002", []string{"127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9002"}},
		{"9000-9001,[::1]:9005-9006/udp", []string{"127.0.0.1:9000", "127.0.0.1:9001", "[::1]:9005/udp", "[::1]:9006/udp"}},
		{"hostX:53/udp,hostY:53", []string{"hostX:53/udp", "hostY:53"}},
		{"9011/udp,9011", []string{"127.0.0.1:9011/udp", "127.0.0.1:9011"}},
		{"9011, 9012", []string{"127.0.0.1:9011", "127.0.0.1:9012"}},
		{"[fe80::1%eth0]:80", []string{"[fe80::1%eth0]:80"}},
	} {
		fs, err := ParseEntrances(tc.in)
		if assert.NoError(t, err, tc.in) {
			assert.Equal(t, tc.want, binds(fs), tc.in)
		}
	}

	// A mistake names its item.
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:9011,127.0.0.1:x", `port "127.0.0.1:9011,127.0.0.1:x": item "127.0.0.1:x": "x" is not a port number`},
		{"9011,::1:9012", `item "::1:9012": put an IPv6 address in brackets`},
		{"9011,:9012", `item ":9012": empty address before ':'`},
		{"9011,[::1]9012", `item "[::1]9012": want [IPv6]:PORT`},
		{"9011,[::1:9012", `item "[::1:9012": '[' without ']'`},
		{"9011,::1]:9012", `item "::1]:9012": '[' and ']' go around an IPv6 address`},
		{"9011,[]:9012", `item "[]:9012": empty address in '[]'`},
		{"9011,127.0.0.1:9020-9010", `item "127.0.0.1:9020-9010": range 9020-9010 is backwards`},
		{"9011,9011", `item "9011": 127.0.0.1:9011 is in the list twice`},
		{"127.0.0.1:9011,9011", `127.0.0.1:9011 is in the list twice`},
		{"9011,", "an empty item between commas"},
		{"9011,127.0.0.1:1-5000", `item "127.0.0.1:1-5000": 1-5000 is 5000 ports; one --port opens at most 1024`},
		{"1-1000,2001-2100", `item "2001-2100": the list reaches 1100 ports; one --port opens at most 1024`},
		{"127.0.0.1:x", `port "127.0.0.1:x": "x" is not a port number`},
	} {
		_, err := ParseEntrances(tc.in)
		if assert.Error(t, err, tc.in) {
			assert.Contains(t, err.Error(), tc.want, tc.in)
		}
	}
	fs, err := ParseEntrances("1-1024")
	require.NoError(t, err)
	assert.Len(t, fs, maxEntrances, "a full range of the cap is allowed")
}
