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

// sockmux link takes each of its settings (settings.go) from, in this
// order of precedence: its flag on the command line; its environment
// variable (SOCKMUX_<FLAG>, e.g. SOCKMUX_DEAD_TIMEOUT); the --config file
// (YAML, keys are the long flag names); its default.

// specEnv sets each spec setting (--port, --server, --dest) that the
// command line did not set from its environment variable, whole: a --port
// list or a --server host list keeps its commas. It returns the names it
// set. (urfave/cli reads the other settings' variables itself.)
func specEnv(c *cli.Context, ss []setting) ([]string, error) {
	var set []string
	for i := range ss {
		s := &ss[i]
		if s.spec() == nil || s.env == "" {
			continue
		}
		name := s.name()
		v, ok := os.LookupEnv(s.env)
		if !ok || v == "" || c.IsSet(name) {
			continue
		}
		if err := c.Set(name, v); err != nil {
			return set, fmt.Errorf("%s: %w", s.env, err)
		}
		set = append(set, name)
	}
	return set, nil
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
	name   string // the setting's flag
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

// loadConfig reads and checks a --config file against ss, the settings of
// sockmux link.
func loadConfig(path string, ss []setting) (*configFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	return parseConfig(path, data, ss)
}

// parseConfig parses a config file's text. Every key must be the key of
// one of ss, given once, with a value of the setting's kind that its
// check accepts. Each value is checked here, once, and reported with its
// line; applyConfig does not check it again.
func parseConfig(path string, data []byte, ss []setting) (cf *configFile, err error) {
	defer func() {
		// The YAML parser is not known to panic on bad input, but a
		// config file must never crash the link.
		if r := recover(); r != nil {
			cf, err = nil, fmt.Errorf("%s: not valid YAML: %v", path, r)
		}
	}()
	byKey := map[string]*setting{}
	aliases := map[string]string{} // a flag's alias or long name: its key
	noKey := map[string]bool{}     // flags that no key gives
	for i := range ss {
		s := &ss[i]
		if s.key == "" {
			noKey[s.name()] = true
			continue
		}
		byKey[s.key] = s
		for _, a := range s.flag.Names() {
			if a != s.key {
				aliases[a] = s.key
			}
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
		s, ok := byKey[key]
		if !ok {
			bare := strings.TrimLeft(key, "-")
			switch {
			case aliases[key] != "":
				return nil, configError(path, k.Line, key, "unknown key; keys are the long flag names: write %q", aliases[key])
			case bare != key && byKey[bare] != nil:
				return nil, configError(path, k.Line, key, "unknown key; write it without dashes: %q", bare)
			case key == "config":
				return nil, configError(path, k.Line, key, "a config file cannot name another")
			case noKey[key]:
				return nil, configError(path, k.Line, key, "not read from a config file; give it as --%s", key)
			}
			return nil, configError(path, k.Line, key, "unknown key (not a flag of sockmux link; see sockmux link --help)")
		}
		if first, dup := seen[key]; dup {
			return nil, configError(path, k.Line, key, "given twice (first on line %d)", first)
		}
		seen[key] = k.Line
		e, err := configValues(path, key, k.Line, v, kindOf(s.flag), s.example)
		if err != nil {
			return nil, err
		}
		e.name = s.name()
		for _, val := range e.values {
			if err := s.problem(val.text); err != nil {
				return nil, configError(path, val.line, key, "%v", err)
			}
		}
		cf.entries = append(cf.entries, e)
	}
	return cf, nil
}

// configValues checks v, the value of key, against the flag's kind.
func configValues(path, key string, line int, v *yaml.Node, kind flagKind, example string) (configEntry, error) {
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
				if example == "" {
					example = "value"
				}
				return e, configError(path, it.Line, key, "want a list of values, each a string such as %q", example)
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

// applyConfig sets on c each value of cf whose flag was set neither on
// the command line nor in the environment, and returns the keys of cf
// that were (they are overridden). The values were checked by
// parseConfig; a value the flag's parser still refuses is reported with
// its line.
func applyConfig(c *cli.Context, cf *configFile) (overridden []string, err error) {
	var apply []configEntry
	for _, e := range cf.entries {
		if c.IsSet(e.name) {
			overridden = append(overridden, e.key)
			continue
		}
		apply = append(apply, e)
	}
	for _, e := range apply {
		for _, v := range e.values {
			if err := c.Set(e.name, v.text); err != nil {
				return overridden, configError(cf.path, v.line, e.key, "%v", err)
			}
		}
	}
	return overridden, nil
}

// resolveFlags brings the environment's spec settings and the --config
// file under c's flags, in order of precedence, and checks every value:
// those of the command line and the environment here, the file's as it is
// read.
func resolveFlags(c *cli.Context, ss []setting) (*configFile, []string, error) {
	given := givenByFlagOrEnv(c, ss)
	fromVars, err := specEnv(c, ss)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range fromVars {
		given[name] = fromEnv
	}
	if err := checkGiven(ss, c, given); err != nil {
		return nil, nil, err
	}
	path := c.String("config")
	if path == "" {
		return nil, nil, nil
	}
	cf, err := loadConfig(path, ss)
	if err != nil {
		return nil, nil, err
	}
	overridden, err := applyConfig(c, cf)
	return cf, overridden, err
}

// settingsOf records the value of each setting that a reload cannot
// change while the link runs (all but those marked reload), for telling
// which of them a changed file asks for.
func settingsOf(c *cli.Context, ss []setting) map[string]string {
	out := map[string]string{}
	for i := range ss {
		if ss[i].reload {
			continue
		}
		name := ss[i].name()
		out[name] = fmt.Sprint(c.Value(name))
	}
	return out
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
