package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/forward"
)

// writeConfig writes a config file in the test's directory.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sockmux.yaml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// linkFlagNames are the long names of sockmux link's flags.
func linkFlagNames() []string {
	var names []string
	for _, f := range newLinkCommand(nil).Flags {
		names = append(names, f.Names()[0])
	}
	return names
}

// clearEnv unsets every SOCKMUX_* variable of a link setting for the test.
func clearEnv(t *testing.T) {
	for _, s := range linkSettings(&forwardFlags{}) {
		if s.env != "" {
			t.Setenv(s.env, "")
			os.Unsetenv(s.env)
		}
	}
}

func forwardsOf(t *testing.T, kind forward.Kind, specs ...string) []forward.Forward {
	t.Helper()
	var out []forward.Forward
	for _, s := range specs {
		f, err := forward.ParseForward(kind, s)
		require.NoError(t, err)
		out = append(out, f)
	}
	return out
}

func ruleTexts(p linkPlan) []string {
	var out []string
	for _, r := range p.rules {
		out = append(out, r.String())
	}
	return out
}

// A file with two forwards and a few options gives the plan they say.
func TestConfigFileGivesThePlan(t *testing.T) {
	clearEnv(t)
	path := writeConfig(t, `
# two forwards and options
connect: 127.0.0.1:9000
local:
  - 8080:127.0.0.1:80
remote: 9090:127.0.0.1:90   # one value needs no list
baud: 9600
stdio: false
dead-timeout: 7s
server:
  - 127.0.0.1:23:-:-P9023
dest: [127.0.0.1:53/udp]
allow: [127.0.0.1, 10.0.0.0/8:22]
name: cable0
`)
	plan, err := planFromArgs([]string{"--config", path})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9000", plan.transport.connect)
	assert.Equal(t, append(forwardsOf(t, forward.Local, "8080:127.0.0.1:80"), forwardsOf(t, forward.Remote, "9090:127.0.0.1:90")...), plan.forwards)
	assert.Equal(t, []string{"tcp://127.0.0.1:23:-:-P9023", "udp://127.0.0.1:53"}, ruleTexts(plan))
	assert.Equal(t, 9600, plan.opts.serial.Baud)
	assert.Equal(t, 7*time.Second, plan.opts.deadTimeout)
	assert.Equal(t, []string{"127.0.0.1", "10.0.0.0/8:22"}, plan.opts.allow)
	assert.Equal(t, "cable0", plan.ops.name)
	require.NotNil(t, plan.config)
	assert.Equal(t, path, plan.config.path)
	assert.Empty(t, plan.config.overridden)
	assert.Equal(t, "7s", plan.config.settings["dead-timeout"])
	// Untouched settings keep their defaults.
	assert.Equal(t, 30*time.Second, plan.opts.linkWait)
	assert.Equal(t, "none", plan.opts.serial.Parity)
}

// Each level of precedence, for a scalar flag, a list flag and a rule
// flag: the default, then the file over it, the environment over the
// file, the command line over the environment.
func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, `
listen: 127.0.0.1:9000
dead-timeout: 7s
local: [1001:127.0.0.1:1]
server: [127.0.0.1:1001]
insecure: true
`)
	type want struct {
		dead   time.Duration
		local  string
		server string
		insec  bool
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want want
	}{
		{"default", nil, []string{"--listen", "127.0.0.1:9000"}, want{0, "", "", false}},
		{"file over default", nil, []string{"--config", path}, want{7 * time.Second, "1001:127.0.0.1:1", "127.0.0.1:1001", true}},
		{"environment over file", map[string]string{"SOCKMUX_DEAD_TIMEOUT": "8s", "SOCKMUX_LOCAL": "1002:127.0.0.1:2", "SOCKMUX_SERVER": "127.0.0.1:1002", "SOCKMUX_INSECURE": "false"},
			[]string{"--config", path}, want{8 * time.Second, "1002:127.0.0.1:2", "127.0.0.1:1002", false}},
		{"flag over environment", map[string]string{"SOCKMUX_DEAD_TIMEOUT": "8s", "SOCKMUX_LOCAL": "1002:127.0.0.1:2", "SOCKMUX_SERVER": "127.0.0.1:1002", "SOCKMUX_INSECURE": "false"},
			[]string{"--config", path, "--dead-timeout", "9s", "-L", "1003:127.0.0.1:3", "--server", "127.0.0.1:1003", "--insecure"}, want{9 * time.Second, "1003:127.0.0.1:3", "127.0.0.1:1003", true}},
		{"the config file named in the environment", map[string]string{"SOCKMUX_CONFIG": path}, nil, want{7 * time.Second, "1001:127.0.0.1:1", "127.0.0.1:1001", true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			plan, err := planFromArgs(tc.args)
			require.NoError(t, err)
			assert.Equal(t, tc.want.dead, plan.opts.deadTimeout)
			assert.Equal(t, tc.want.insec, plan.opts.insecure)
			if tc.want.local == "" {
				assert.Empty(t, plan.forwards)
				assert.Empty(t, plan.rules)
				return
			}
			assert.Equal(t, forwardsOf(t, forward.Local, tc.want.local), plan.forwards)
			assert.Equal(t, []string{"tcp://" + tc.want.server}, ruleTexts(plan))
		})
	}
}

// The keys that flags or variables override are reported.
func TestConfigOverriddenKeys(t *testing.T) {
	clearEnv(t)
	path := writeConfig(t, "listen: 127.0.0.1:9000\nbaud: 9600\nname: a\n")
	t.Setenv("SOCKMUX_NAME", "b")
	plan, err := planFromArgs([]string{"--config", path, "--baud", "19200"})
	require.NoError(t, err)
	assert.Equal(t, []string{"baud", "name"}, plan.config.overridden)
	assert.Equal(t, 19200, plan.opts.serial.Baud)
	assert.Equal(t, "b", plan.ops.name)
}

// An unknown key or a bad value is an error that names the key and the
// line; so is everything else wrong with the file.
func TestConfigErrorsNameKeyAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"unknown key", "listen: 127.0.0.1:1\n\nbogus: 1\n", `:3: key "bogus": unknown key`},
		{"short flag name", "L: 1:a:2\n", `:1: key "L": unknown key; keys are the long flag names: write "local"`},
		{"dashes", "--baud: 9600\n", `:1: key "--baud": unknown key; write it without dashes: "baud"`},
		{"int", "listen: 127.0.0.1:1\nmax-streams: many\n", `:2: key "max-streams": "many" is not a whole number`},
		{"baud", "listen: 127.0.0.1:1\nbaud: fast\n", `:2: key "baud": "fast": want a number of bits per second such as 115200, or auto`},
		{"bool", "insecure: yes please\n", `:1: key "insecure": "yes please" is not true or false`},
		{"duration", "\n\ndead-timeout: 5\n", `:3: key "dead-timeout": "5" is not a duration`},
		{"negative duration", "grace: -1s\n", `:1: key "grace": -1s: must not be negative`},
		{"forward spec", "local:\n  - 8080:127.0.0.1:80\n  - 8081:nohostport\n", `:3: key "local": forward "8081:nohostport"`},
		{"rule", "server: [\"tcp://\"]\n", `:1: key "server":`},
		{"allow", "allow:\n  - 300.1.2.3/99\n", `:2: key "allow":`},
		{"parity", "parity: sometimes\n", `:1: key "parity": "sometimes": want one of none, odd, even, mark, space`},
		{"log level", "log-level: loud\n", `:1: key "log-level":`},
		{"max streams", "max-streams: 0\n", `:1: key "max-streams": 0: must be between 1`},
		{"list where one value goes", "listen:\n  - 127.0.0.1:1\n", `:2: key "listen": want a single value, not a list`},
		{"mapping in a list", "local:\n  - {a: b}\n", `:2: key "local": want a list of values`},
		{"no value", "listen:\n", `:1: key "listen": no value`},
		{"twice", "baud: 9600\nbaud: 19200\n", `:2: key "baud": given twice (first on line 1)`},
		{"config in config", "config: other.yaml\n", `:1: key "config": a config file cannot name another`},
		{"not a mapping", "- listen\n", `:1: want a mapping of settings`},
		{"YAML syntax", "listen: 127.0.0.1:1\nlocal: [1:a:2\n", `line `},
		{"tab", "listen: 1\n\tbaud: 2\n", `line 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			path := writeConfig(t, tc.text)
			_, err := planFromArgs([]string{"--config", path})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), path)
		})
	}
}

// Binary junk, huge nesting and the like are errors, never a crash.
func TestConfigJunkIsAnError(t *testing.T) {
	flags := linkSettings(&forwardFlags{})
	for _, text := range []string{
		"\x00\x01\x02", strings.Repeat("[", 100000), "a: &x [*x]\n", "*unknown\n",
		"listen: &a 127.0.0.1:1\nconnect: *a\n", strings.Repeat("- ", 5000) + "x",
		"? [a, b]\n: c\n", "local: !!binary aGVsbG8=\n", "baud: 99999999999999999999999\n",
	} {
		_, _ = parseConfig("junk.yaml", []byte(text), flags)
	}
	cf, err := parseConfig("empty.yaml", []byte("# nothing but comments\n"), flags)
	require.NoError(t, err)
	assert.Empty(t, cf.entries)
	cf, err = parseConfig("empty.yaml", nil, flags)
	require.NoError(t, err)
	assert.Empty(t, cf.entries)
}

// A missing file is an error naming it.
func TestConfigMissingFile(t *testing.T) {
	clearEnv(t)
	_, err := planFromArgs([]string{"--config", "/nonexistent/sockmux.yaml"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/nonexistent/sockmux.yaml")
}

// docs/sockmux.yaml, the full example, loads, and names every flag of
// sockmux link (some commented out: the transports exclude each other).
func TestConfigExampleIsComplete(t *testing.T) {
	clearEnv(t)
	const path = "../../docs/sockmux.yaml"
	plan, err := planFromArgs([]string{"--config", path})
	require.NoError(t, err)
	assert.Equal(t, "/dev/ttyUSB0", plan.transport.comm)
	assert.NotEmpty(t, plan.forwards)
	assert.NotEmpty(t, plan.rules)
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, name := range linkFlagNames() {
		if name == "config" || name == "help" {
			continue
		}
		assert.Regexp(t, regexp.MustCompile(`(?m)^(# )?`+regexp.QuoteMeta(name)+`:`), string(text), "docs/sockmux.yaml does not show %s", name)
	}
}

// The service examples in dist/ hold what docs/guide.md says they do, and
// run sockmux link with flags it has.
func TestServiceExamples(t *testing.T) {
	unit, err := os.ReadFile("../../dist/systemd/sockmux.service")
	require.NoError(t, err)
	for _, line := range []string{"Restart=on-failure", "RestartSec=5s", "SupplementaryGroups=dialout",
		"BindsTo=dev-ttyUSB0.device", "After=dev-ttyUSB0.device", "ExecReload=/bin/kill -HUP $MAINPID",
		"WantedBy=multi-user.target dev-ttyUSB0.device"} {
		assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(line), string(unit))
	}
	exec := regexp.MustCompile(`(?m)^ExecStart=\S+ link (.*)$`).FindStringSubmatch(string(unit))
	require.NotNil(t, exec)
	plist, err := os.ReadFile("../../dist/launchd/org.sockmux.link.plist")
	require.NoError(t, err)
	var doc struct {
		Dict struct {
			Keys   []string `xml:"key"`
			Arrays []struct {
				Strings []string `xml:"string"`
			} `xml:"array"`
		} `xml:"dict"`
	}
	require.NoError(t, xml.Unmarshal(plist, &doc))
	assert.Contains(t, doc.Dict.Keys, "KeepAlive")
	require.Len(t, doc.Dict.Arrays, 1)
	args := doc.Dict.Arrays[0].Strings
	require.Greater(t, len(args), 2)
	assert.Equal(t, "link", args[1])
	for _, argv := range [][]string{strings.Fields(exec[1]), args[2:]} {
		// The flags parse; only the missing config file stops them.
		clearEnv(t)
		_, err := planFromArgs(argv)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "--config: open ")
	}
}
