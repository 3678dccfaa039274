package main

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

// Every entry follows the documented rule (docs/guide.md): its variable
// is SOCKMUX_ and the flag's name in capitals with _ for -, its key the
// long flag name; names, variables and keys are each given once.
func TestSettingsTableFollowsTheRule(t *testing.T) {
	ss := linkSettings(&forwardFlags{})
	names, envs, keys := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, s := range ss {
		name := s.name()
		assert.False(t, names[name], "flag %s twice", name)
		names[name] = true
		assert.Equal(t, "SOCKMUX_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_")), s.env, name)
		assert.False(t, envs[s.env], "variable %s twice", s.env)
		envs[s.env] = true
		if name == "config" {
			assert.Empty(t, s.key, "a config file cannot name another")
			continue
		}
		assert.Equal(t, name, s.key, name)
		assert.False(t, keys[s.key], "key %s twice", s.key)
		keys[s.key] = true
		if kindOf(s.flag) == kindList {
			assert.NotEmpty(t, s.example, "list key %s has an example for its error", name)
		}
	}
}

// The flags of sockmux link read the table's variables (help shows them),
// and sockmux delegate's only --secret-file's.
func TestSettingsFlagsCarryTheirVariables(t *testing.T) {
	ss := linkSettings(&forwardFlags{})
	for i, f := range linkFlags(ss) {
		assert.Equal(t, []string{ss[i].env}, flagEnvVars(f), ss[i].name())
	}
	for _, f := range optionFlags() {
		if f.Names()[0] == "secret-file" {
			assert.Equal(t, []string{"SOCKMUX_SECRET_FILE"}, flagEnvVars(f))
			continue
		}
		assert.Empty(t, flagEnvVars(f), f.Names()[0])
	}
}

// SIGHUP applies the forwards, the exit rules and allow, as documented;
// the rest waits for a restart.
func TestSettingsReloadable(t *testing.T) {
	var got []string
	for _, s := range linkSettings(&forwardFlags{}) {
		if s.reload {
			got = append(got, s.name())
		}
	}
	assert.ElementsMatch(t, []string{"local", "remote", "dynamic", "port", "server", "dest", "allow"}, got)
}

// Every default passes its setting's check.
func TestSettingsDefaultsPassTheirChecks(t *testing.T) {
	for _, s := range linkSettings(&forwardFlags{}) {
		df, ok := s.flag.(cli.DocGenerationFlag)
		if !ok || s.check == nil || kindOf(s.flag) == kindList {
			continue
		}
		assert.NoError(t, s.problem(df.GetValue()), "the default of --%s", s.name())
	}
}

// badValues has, for each setting with a check, a value it refuses and
// what the error says of it.
var badValues = map[string]struct{ value, why string }{
	"listen":             {"9000", "want HOST:PORT"},
	"wire":               {"telnet", "want one of sockmux, delegate"},
	"rs485-delay-before": {"200ms", "must be between 0 and 100ms"},
	"rs485-delay-after":  {"-1ms", "must be between 0 and 100ms"},
	"connect":            {"hostonly", "want HOST:PORT"},
	"comm":               {"bad name=/dev/x", "NAME=PATH: peer name"},
	"comm-glob":          {"/dev/[", "not a glob pattern"},
	"local":              {"8081:nohostport", `forward "8081:nohostport"`},
	"remote":             {"70000:127.0.0.1:80", `forward "70000:127.0.0.1:80"`},
	"dynamic":            {"1080:x:80", "forward"},
	"port":               {"99999", `port "99999"`},
	"server":             {"tcp://hostY", `"tcp://hostY" needs a port`},
	"dest":               {"nohostport", `dest "nohostport"`},
	"baud":               {"0", "want a number of bits per second such as 115200, or auto"},
	"baud-start":         {"0", "must be positive"},
	"baud-max":           {"-1", "must not be negative"},
	"data-bits":          {"9", "must be 5, 6, 7 or 8"},
	"parity":             {"sometimes", "want one of none, odd, even, mark, space"},
	"stop-bits":          {"3", "want one of 1, 1.5, 2"},
	"flow":               {"xonxoff", "want one of none, rtscts"},
	"dtr":                {"low", "want one of on, off"},
	"rts":                {"1", "want one of on, off"},
	"carrier":            {"ri", "want one of none, dcd, dsr, cts"},
	"link-wait":          {"-1s", "must not be negative"},
	"dial-timeout":       {"-1s", "must not be negative"},
	"udp-timeout":        {"0s", "must be positive"},
	"udp-sessions":       {"0", "must be positive"},
	"keepalive":          {"-1s", "must not be negative"},
	"resume-timeout":     {"-1s", "must not be negative"},
	"dead-timeout":       {"-1s", "must not be negative"},
	"handshake-timeout":  {"-1s", "must not be negative"},
	"grace":              {"-1s", "must not be negative"},
	"compress":           {"zip", "want one of auto, off, fast, best"},
	"fec":                {"on", "want auto or off"},
	"fec-block":          {"16", "want 32 to 255 bytes"},
	"max-streams":        {"0", "must be between 1 and 1048576"},
	"allow":              {"300.1.2.3/99", ""},
	"log-level":          {"loud", "want one of debug, info, warn, error"},
	"metrics":            {"9464", "want HOST:PORT"},
}

// A bad value is refused, whether it comes from the flag, the variable or
// the file, with an error that names the flag, the variable, or the key
// and its line.
func TestSettingsBadValueNamesWhereItCameFrom(t *testing.T) {
	for _, s := range linkSettings(&forwardFlags{}) {
		name := s.name()
		bad, ok := badValues[name]
		if s.check == nil {
			assert.False(t, ok, "--%s has no check", name)
			continue
		}
		require.True(t, ok, "badValues has no value for --%s", name)
		transport := []string{"--connect", "127.0.0.1:1"}
		if name == "connect" {
			transport = nil
		}
		t.Run(name+"/flag", func(t *testing.T) {
			clearEnv(t)
			_, err := planFromArgs(append(transport, "--"+name, bad.value))
			require.Error(t, err)
			assert.Regexp(t, `^`+s.display()+`[ :]`, err.Error())
			assert.Contains(t, err.Error(), bad.why)
		})
		t.Run(name+"/variable", func(t *testing.T) {
			clearEnv(t)
			t.Setenv(s.env, bad.value)
			_, err := planFromArgs(transport)
			require.Error(t, err)
			assert.Regexp(t, `^`+s.env+`[=:]`, err.Error())
			assert.Contains(t, err.Error(), bad.why)
		})
		t.Run(name+"/file", func(t *testing.T) {
			clearEnv(t)
			path := writeConfig(t, fmt.Sprintf("connect: 127.0.0.1:1\n%s: %s\n", s.key, bad.value))
			if name == "connect" {
				path = writeConfig(t, fmt.Sprintf("%s: %s\n", s.key, bad.value))
			}
			_, err := planFromArgs([]string{"--config", path})
			require.Error(t, err)
			line := 2
			if name == "connect" {
				line = 1
			}
			assert.Contains(t, err.Error(), fmt.Sprintf("%s:%d: key %q: ", path, line, s.key))
			assert.Contains(t, err.Error(), bad.why)
		})
	}
}

// The command line wins over the variable, and only the value used is
// checked there: a bad variable under a good flag is no error, and a bad
// flag over a good variable is the flag's.
func TestSettingsFlagOverVariable(t *testing.T) {
	clearEnv(t)
	t.Setenv("SOCKMUX_BAUD", "0")
	plan, err := planFromArgs([]string{"--connect", "127.0.0.1:1", "--baud", "9600"})
	require.NoError(t, err)
	assert.Equal(t, 9600, plan.opts.serial.Baud)

	t.Setenv("SOCKMUX_BAUD", "9600")
	_, err = planFromArgs([]string{"--connect", "127.0.0.1:1", "--baud", "0"})
	assert.EqualError(t, err, `--baud "0": want a number of bits per second such as 115200, or auto`)

	t.Setenv("SOCKMUX_BAUD", "0")
	_, err = planFromArgs([]string{"--connect", "127.0.0.1:1"})
	assert.EqualError(t, err, "SOCKMUX_BAUD=0: want a number of bits per second such as 115200, or auto")
}

// The file is checked whole: a bad value of a key that a flag overrides
// still stops sockmux, with its line.
func TestSettingsFileCheckedWhole(t *testing.T) {
	clearEnv(t)
	path := writeConfig(t, "connect: 127.0.0.1:1\nudp-timeout: 0s\n")
	_, err := planFromArgs([]string{"--config", path, "--udp-timeout", "5s"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `:2: key "udp-timeout": 0s: must be positive`)
}

// sockmux delegate checks its options with the same checks, naming the
// flag.
func TestSettingsDelegateOptions(t *testing.T) {
	for _, tc := range []struct{ opt, value, want string }{
		{"--udp-timeout", "0s", "--udp-timeout 0s: must be positive"},
		{"--max-streams", "2000000", "--max-streams 2000000: must be between 1 and 1048576"},
		{"--parity", "sometimes", `--parity "sometimes": want one of none, odd, even, mark, space`},
		{"--allow", "300.1.2.3/99", "--allow: "},
	} {
		_, _, err := planFromDelegate([]string{"SERVER=sockmux://127.0.0.1:1", tc.opt, tc.value})
		require.Error(t, err, tc.opt)
		assert.Contains(t, err.Error(), tc.want)
	}
}

// No value of any setting makes its check, or sockmux link reading it,
// panic.
func TestSettingsNeverPanic(t *testing.T) {
	junk := []string{"", " ", "-", "0", "-1", "99999999999999999999", "1e309", "x:y:z", ":::", "\x00", "[", "%", "on,off", strings.Repeat("a", 4096)}
	for _, s := range linkSettings(&forwardFlags{}) {
		for _, v := range junk {
			_ = s.problem(v)
		}
		clearEnv(t)
		_, _ = planFromArgs([]string{"--connect", "127.0.0.1:1", "--" + s.name(), "x:-1"})
		t.Setenv(s.env, "1e309")
		_, _ = planFromArgs([]string{"--connect", "127.0.0.1:1"})
	}
}

// An error of the link's or the mux's Verify (from endpoint.New) names
// the flags of the fields at fault; the fields named are fields.
func TestSettingsNameTheFlagsOfVerifyErrors(t *testing.T) {
	err := namedByFlags(link.Config{KeepAlive: 10 * time.Second, DeadTimeout: 5 * time.Second}.Verify())
	assert.EqualError(t, err, "--dead-timeout and --keepalive: link: DeadTimeout 5s is not longer than KeepAlive 10s: an idle link would be declared dead before it pings")
	err = namedByFlags(mux.Config{MaxStreams: -1}.Verify())
	assert.True(t, strings.HasPrefix(err.Error(), "--max-streams: mux: MaxStreams -1: "), err.Error())
	other := errors.New("other")
	assert.Equal(t, other, namedByFlags(other))

	lt, mt := reflect.TypeOf(link.Config{}), reflect.TypeOf(mux.Config{})
	for _, s := range linkSettings(&forwardFlags{}) {
		if s.field == "" {
			continue
		}
		layer, field, _ := strings.Cut(s.field, ".")
		typ := map[string]reflect.Type{"link": lt, "mux": mt}[layer]
		require.NotNil(t, typ, s.field)
		_, ok := typ.FieldByName(field)
		assert.True(t, ok, "--%s: %s is not a field", s.name(), s.field)
	}
}

// --baud auto starts the port at --baud-start; a number is as before.
func TestBaudAuto(t *testing.T) {
	clearEnv(t)
	plan, err := planFromArgs([]string{"--comm", "/dev/ttyUSB9", "--baud", "auto", "--baud-start", "57600", "--baud-max", "921600"})
	require.NoError(t, err)
	assert.True(t, plan.opts.autoBaud)
	assert.Equal(t, 57600, plan.opts.serial.Baud)
	assert.Equal(t, 921600, plan.opts.baudMax)
	plan, err = planFromArgs([]string{"--comm", "/dev/ttyUSB9", "--baud", "9600"})
	require.NoError(t, err)
	assert.False(t, plan.opts.autoBaud)
	assert.Equal(t, 9600, plan.opts.serial.Baud)
	path := writeConfig(t, "comm: /dev/ttyUSB9\nbaud: auto\n")
	plan, err = planFromArgs([]string{"--config", path})
	require.NoError(t, err)
	assert.True(t, plan.opts.autoBaud)
	assert.Equal(t, 115200, plan.opts.serial.Baud)
	for _, args := range [][]string{{"--connect", "127.0.0.1:1"}, {"--listen", "127.0.0.1:1"}, {"--commin", "/tmp/a", "--commout", "/tmp/b"}} {
		plan, err := planFromArgs(append(args, "--baud", "auto"))
		require.NoError(t, err)
		assert.ErrorContains(t, checkAutoBaud(plan), "--baud auto is for a serial port", "%v", args)
	}
}
