package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/sockmux/sockmux/forward"
)

// sockmux link takes each of its settings from, in this order of
// precedence: its flag on the command line; its environment variable
// SOCKMUX_<FLAG> (e.g. SOCKMUX_DEAD_TIMEOUT); the --config file (YAML, keys
// are the long flag names); its default.

// envPrefix starts the environment variable of every sockmux link flag.
const envPrefix = "SOCKMUX_"

// envName is the environment variable of flag name: SOCKMUX_DEAD_TIMEOUT
// for dead-timeout.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// configFlag is --config.
func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", EnvVars: []string{envName("config")},
		Usage:    "read settings from the YAML `FILE` (keys are the long flag names; flags and SOCKMUX_* variables win over it); SIGHUP reads it again and applies changed forwards",
		Category: "Configuration"}
}

// withEnv gives each flag its environment variable. The flags whose
// values append to a specList (--port, --server, --dest) are read from
// the environment by specEnv instead, so that the command line replaces
// the environment's value rather than adding to it (help shows their
// variables too: flagEnvVars).
func withEnv(flags []cli.Flag) {
	for _, f := range flags {
		name := f.Names()[0]
		env := envName(name)
		switch f := f.(type) {
		case *cli.StringFlag:
			f.EnvVars = addEnv(f.EnvVars, env)
		case *cli.IntFlag:
			f.EnvVars = addEnv(f.EnvVars, env)
		case *cli.BoolFlag:
			f.EnvVars = addEnv(f.EnvVars, env)
		case *cli.DurationFlag:
			f.EnvVars = addEnv(f.EnvVars, env)
		case *cli.StringSliceFlag:
			f.EnvVars = addEnv(f.EnvVars, env)
		case *cli.Float64Flag:
			f.EnvVars = addEnv(f.EnvVars, env)
		case *cli.Int64Flag:
			f.EnvVars = addEnv(f.EnvVars, env)
		case *cli.UintFlag:
			f.EnvVars = addEnv(f.EnvVars, env)
		}
	}
}

func addEnv(vars []string, env string) []string {
	if slices.Contains(vars, env) {
		return vars
	}
	return append(vars, env)
}

// specEnv sets each spec flag (GenericFlag) that the command line did not
// set from its environment variable, whole: a --port list or a --server
// host list keeps its commas.
func specEnv(c *cli.Context, flags []cli.Flag) error {
	for _, f := range flags {
		if _, ok := f.(*cli.GenericFlag); !ok {
			continue
		}
		name := f.Names()[0]
		v, ok := os.LookupEnv(envName(name))
		if !ok || v == "" || c.IsSet(name) {
			continue
		}
		if err := c.Set(name, v); err != nil {
			return fmt.Errorf("%s: %w", envName(name), err)
		}
	}
	return nil
}

// flagKind is the type of a flag's value, which its key in the file must
// have.
type flagKind int

const (
	kindString flagKind = iota
	kindBool
	kindInt
	kindDuration
	kindList // repeatable: a YAML list, or one value
)

func kindOf(f cli.Flag) flagKind {
	switch f.(type) {
	case *cli.BoolFlag:
		return kindBool
	case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag:
		return kindInt
	case *cli.DurationFlag:
		return kindDuration
	case *cli.StringSliceFlag, *cli.GenericFlag:
		return kindList
	}
	return kindString
}

// configFile is a parsed --config file.
type configFile struct {
	path    string
	entries []configEntry // in the file's order
}

// configEntry is one key of the file with its values.
type configEntry struct {
	key    string
	line   int
	values []configValue
}

// configValue is one value, as text for the flag's parser.
type configValue struct {
	text string
	line int
}

// configError names the file, line and key of a problem.
func configError(path string, line int, key, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if key == "" {
		return fmt.Errorf("%s:%d: %s", path, line, msg)
	}
	return fmt.Errorf("%s:%d: key %q: %s", path, line, key, msg)
}

// loadConfig reads and checks a --config file against flags, the flags of
// sockmux link.
func loadConfig(path string, flags []cli.Flag) (*configFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	return parseConfig(path, data, flags)
}

// parseConfig parses a config file's text. Every key must be the long name
// of one of flags (but not config), given once, with a value of the flag's
// type that its parser accepts.
func parseConfig(path string, data []byte, flags []cli.Flag) (cf *configFile, err error) {
	defer func() {
		// The YAML parser is not known to panic on bad input, but a
		// config file must never crash the link.
		if r := recover(); r != nil {
			cf, err = nil, fmt.Errorf("%s: not valid YAML: %v", path, r)
		}
	}()
	byName := map[string]cli.Flag{}
	aliases := map[string]string{}
	for _, f := range flags {
		names := f.Names()
		if names[0] == "config" || names[0] == "help" {
			continue
		}
		byName[names[0]] = f
		for _, a := range names[1:] {
			aliases[a] = names[0]
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	cf = &configFile{path: path}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return cf, nil // empty
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return cf, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return nil, configError(path, root.Line, "", "want a mapping of settings (key: value), one per line")
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, configError(path, k.Line, "", "a key must be a flag name")
		}
		key := k.Value
		f, ok := byName[key]
		if !ok {
			switch {
			case aliases[key] != "":
				return nil, configError(path, k.Line, key, "unknown key; keys are the long flag names: write %q", aliases[key])
			case strings.TrimLeft(key, "-") != key && byName[strings.TrimLeft(key, "-")] != nil:
				return nil, configError(path, k.Line, key, "unknown key; write it without dashes: %q", strings.TrimLeft(key, "-"))
			case key == "config":
				return nil, configError(path, k.Line, key, "a config file cannot name another")
			}
			return nil, configError(path, k.Line, key, "unknown key (not a flag of sockmux link; see sockmux link --help)")
		}
		if first, dup := seen[key]; dup {
			return nil, configError(path, k.Line, key, "given twice (first on line %d)", first)
		}
		seen[key] = k.Line
		e, err := configValues(path, key, k.Line, v, kindOf(f))
		if err != nil {
			return nil, err
		}
		for _, val := range e.values {
			if err := checkValue(key, val.text); err != nil {
				return nil, configError(path, val.line, key, "%v", err)
			}
		}
		cf.entries = append(cf.entries, e)
	}
	return cf, nil
}

// configValues checks v, the value of key, against the flag's kind.
func configValues(path, key string, line int, v *yaml.Node, kind flagKind) (configEntry, error) {
	e := configEntry{key: key, line: line}
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		if kind == kindList {
			return e, nil // an empty list
		}
		return e, configError(path, v.Line, key, "no value (leave the key out for the default)")
	}
	if kind == kindList {
		items := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			items = v.Content
		}
		for _, it := range items {
			if it.Kind == yaml.AliasNode && it.Alias != nil {
				it = it.Alias
			}
			if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
				return e, configError(path, it.Line, key, "want a list of values, each a string such as %q", listExample(key))
			}
			e.values = append(e.values, configValue{it.Value, it.Line})
		}
		return e, nil
	}
	if v.Kind != yaml.ScalarNode {
		return e, configError(path, v.Line, key, "want a single value, not a %s", nodeKind(v))
	}
	switch kind {
	case kindBool:
		if v.Tag != "!!bool" {
			return e, configError(path, v.Line, key, "%q is not true or false", v.Value)
		}
		b := false
		if err := v.Decode(&b); err != nil {
			return e, configError(path, v.Line, key, "%q is not true or false", v.Value)
		}
		e.values = []configValue{{strconv.FormatBool(b), v.Line}}
	case kindInt:
		var n int64
		if v.Tag != "!!int" || v.Decode(&n) != nil {
			return e, configError(path, v.Line, key, "%q is not a whole number", v.Value)
		}
		e.values = []configValue{{strconv.FormatInt(n, 10), v.Line}}
	case kindDuration:
		if _, err := time.ParseDuration(v.Value); err != nil {
			return e, configError(path, v.Line, key, "%q is not a duration such as 500ms, 30s or 1m30s", v.Value)
		}
		e.values = []configValue{{v.Value, v.Line}}
	default:
		e.values = []configValue{{v.Value, v.Line}}
	}
	return e, nil
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	}
	return "value"
}

// listExample is an example value for a list key's error message.
func listExample(key string) string {
	switch key {
	case "local", "remote":
		return "8080:127.0.0.1:80"
	case "dynamic":
		return "1080"
	case "port":
		return "9023"
	case "server":
		return "telnet://host:23"
	case "dest":
		return "host:53/udp"
	case "allow":
		return "10.0.0.0/8:22"
	}
	return "value"
}

// checkValue checks what can be checked of a value on its own, so that a
// bad one is reported with its line.
func checkValue(key, v string) error {
	var err error
	switch key {
	case "local":
		_, err = forward.ParseForward(forward.Local, v)
	case "remote":
		_, err = forward.ParseForward(forward.Remote, v)
	case "dynamic":
		_, err = forward.ParseForward(forward.Dynamic, v)
	case "port":
		_, err = forward.ParseEntrances(v)
	case "server":
		_, err = forward.ParseRule(v)
	case "dest":
		_, err = forward.ParseDest(v)
	case "allow":
		_, err = forward.ParseAllow([]string{v})
	case "log-level":
		_, err = newLogger(v)
	case "parity":
		err = oneOf(v, "none", "odd", "even", "mark", "space")
	case "stop-bits":
		err = oneOf(v, "1", "1.5", "2")
	case "flow":
		err = oneOf(v, "none", "rtscts")
	case "dtr", "rts":
		err = oneOf(v, "on", "off")
	case "carrier":
		err = oneOf(v, "none", "dcd", "dsr", "cts")
	case "baud", "udp-sessions":
		err = positive(v)
	case "max-streams":
		if n, _ := strconv.Atoi(v); n <= 0 || n > 1<<20 {
			err = fmt.Errorf("%s: must be between 1 and %d", v, 1<<20)
		}
	case "udp-timeout":
		if d, _ := time.ParseDuration(v); d <= 0 {
			err = fmt.Errorf("%s: must be positive", v)
		}
	case "link-wait", "dial-timeout", "keepalive", "dead-timeout", "resume-timeout", "handshake-timeout", "grace":
		if d, _ := time.ParseDuration(v); d < 0 {
			err = fmt.Errorf("%s: must not be negative", v)
		}
	}
	return err
}

func oneOf(v string, allowed ...string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("%q: want one of %s", v, strings.Join(allowed, ", "))
}

func positive(v string) error {
	if n, err := strconv.Atoi(v); err != nil || n <= 0 {
		return fmt.Errorf("%s: must be positive", v)
	}
	return nil
}

// applyConfig sets on c each value of cf whose flag was set neither on
// the command line nor in the environment, and returns the keys of cf
// that were (they are overridden). A value the flag's parser refuses is
// reported with its line.
func applyConfig(c *cli.Context, cf *configFile) (overridden []string, err error) {
	var apply []configEntry
	for _, e := range cf.entries {
		if c.IsSet(e.key) {
			overridden = append(overridden, e.key)
			continue
		}
		apply = append(apply, e)
	}
	for _, e := range apply {
		for _, v := range e.values {
			if err := c.Set(e.key, v.text); err != nil {
				return overridden, configError(cf.path, v.line, e.key, "%v", err)
			}
		}
	}
	return overridden, nil
}

// resolveFlags brings the environment's spec flags and the --config file
// under c's flags, in order of precedence.
func resolveFlags(c *cli.Context, flags []cli.Flag) (*configFile, []string, error) {
	if err := specEnv(c, flags); err != nil {
		return nil, nil, err
	}
	path := c.String("config")
	if path == "" {
		return nil, nil, nil
	}
	cf, err := loadConfig(path, flags)
	if err != nil {
		return nil, nil, err
	}
	overridden, err := applyConfig(c, cf)
	return cf, overridden, err
}

// settingsOf records the value of each flag that a reload cannot change
// while the link runs (all but the forwards, the rules and --allow), for
// telling which of them a changed file asks for.
func settingsOf(c *cli.Context, flags []cli.Flag) map[string]string {
	out := map[string]string{}
	for _, f := range flags {
		name := f.Names()[0]
		if reloadable[name] || name == "help" {
			continue
		}
		out[name] = fmt.Sprint(c.Value(name))
	}
	return out
}

// reloadable are the settings SIGHUP applies to a running link.
var reloadable = map[string]bool{
	"local": true, "remote": true, "dynamic": true, "port": true, "server": true, "dest": true, "allow": true,
}

// commandArgs are the arguments sockmux link was run with (after "link"),
// to read them again on SIGHUP.
func commandArgs(c *cli.Context) []string {
	lineage := c.Lineage()
	if len(lineage) > 1 {
		if args := lineage[1].Args().Slice(); len(args) > 0 && args[0] == c.Command.Name {
			return args[1:]
		}
	}
	if len(os.Args) > 2 {
		return os.Args[2:]
	}
	return nil
}

// planFromArgs works out the plan sockmux link args would run, with the
// environment and the --config file as they are now.
func planFromArgs(args []string) (linkPlan, error) {
	var plan linkPlan
	got := false
	cmd := newLinkCommand(func(p linkPlan, _ []string) error {
		plan, got = p, true
		return nil
	})
	app := &cli.App{
		Name:           "sockmux",
		Commands:       []*cli.Command{cmd},
		Writer:         discard{},
		ErrWriter:      discard{},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	if err := app.Run(append([]string{"sockmux", "link"}, args...)); err != nil {
		return plan, err
	}
	if !got {
		return plan, errors.New("sockmux link: nothing to run (help asked for?)")
	}
	return plan, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// planConfig is what a plan read from its --config file.
type planConfig struct {
	path       string
	keys       int               // how many keys the file had
	overridden []string          // its keys that flags or the environment override
	settings   map[string]string // the values of the settings a reload cannot change
}

// reloadPlan reads the configuration again (SIGHUP) and applies what can
// change while the link runs: the forwards, the exit rules and --allow.
// Other settings that changed are named in a warning; they take effect at
// the next start. A file that does not load changes nothing.
func reloadPlan(cur *linkPlan, fwd *forward.Forwarder, log *slog.Logger) {
	log.Info("SIGHUP: reading the configuration again", "config", cur.config.path)
	next, err := cur.reload()
	if err != nil {
		log.Error("configuration not reloaded; the link runs on as it was", "err", err)
		return
	}
	var fixed []string
	for name, v := range next.config.settings {
		if cur.config.settings[name] != v {
			fixed = append(fixed, name)
		}
	}
	if len(fixed) > 0 {
		slices.Sort(fixed)
		log.Warn("settings changed that apply only when sockmux link restarts; they keep their running values", "settings", strings.Join(fixed, ", "))
	}
	if !slices.Equal(cur.opts.allow, next.opts.allow) {
		p, err := forward.ParseAllow(next.opts.allow)
		if err != nil {
			log.Error("--allow not reloaded", "err", err)
		} else {
			fwd.SetAllow(p)
			cur.opts.allow = next.opts.allow
			log.Info("allow changed", "allow", strings.Join(next.opts.allow, ", "))
		}
	}
	ch, err := fwd.Apply(next.forwards, next.rules)
	if err != nil {
		log.Error("configuration reloaded in part: some forwards could not start (SIGHUP tries again)", "err", err)
	}
	cur.forwards, cur.rules = next.forwards, next.rules
	log.Info("configuration reloaded", "changes", ch.String())
}
