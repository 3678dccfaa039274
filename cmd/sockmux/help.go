package main

import (
	"reflect"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/control"
)

// helpGOOS is the system whose conventions help text and the man page
// describe: where files go by default, how an environment variable is
// written. It is runtime.GOOS; a test sets it to render another system's
// help.
var helpGOOS = runtime.GOOS

// cliFlagString is urfave/cli's own rendering of a flag in help.
var cliFlagString = cli.FlagStringer

func init() {
	// urfave/cli writes a flag's variables as $VAR or %VAR% by
	// runtime.GOOS and the shell it guesses, and knows nothing of the
	// variables specEnv reads; render every flag without them and add
	// them the one way, envHint's.
	cli.FlagStringer = func(f cli.Flag) string {
		bare := withoutEnv(f)
		if bare == nil {
			return cliFlagString(f)
		}
		return cliFlagString(bare) + envHint(helpGOOS, flagEnvVars(f))
	}
}

// envHint is the " [$A, $B]" (Windows: " [%A%, %B%]") that help puts after
// a flag read from the environment variables vars; empty without any.
func envHint(goos string, vars []string) string {
	if len(vars) == 0 {
		return ""
	}
	refs := make([]string, len(vars))
	for i, v := range vars {
		if goos == "windows" {
			refs[i] = "%" + v + "%"
		} else {
			refs[i] = "$" + v
		}
	}
	return " [" + strings.Join(refs, ", ") + "]"
}

// flagEnvVars are the environment variables f is read from: its EnvVars,
// or for a spec flag (--port, --server, --dest, read by specEnv) the
// variable of its setting.
func flagEnvVars(f cli.Flag) []string {
	if g, ok := f.(*cli.GenericFlag); ok {
		if v, isSpec := g.Value.(*specValue); isSpec {
			if v.env == "" {
				return nil
			}
			return []string{v.env}
		}
	}
	if f, ok := f.(interface{ GetEnvVars() []string }); ok {
		return f.GetEnvVars()
	}
	return nil
}

// withoutEnv is a copy of the flag f (a pointer to one of urfave/cli's
// flag structs) without its EnvVars, or nil if f is not such a flag.
func withoutEnv(f cli.Flag) cli.Flag {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	c := reflect.New(v.Elem().Type())
	c.Elem().Set(v.Elem())
	ev := c.Elem().FieldByName("EnvVars")
	if !ev.IsValid() || ev.Type() != reflect.TypeOf([]string(nil)) {
		return nil
	}
	ev.Set(reflect.Zero(ev.Type()))
	bare, ok := c.Interface().(cli.Flag)
	if !ok {
		return nil
	}
	return bare
}

// manUsage readies the usage text of every flag of cmds and their
// subcommands for the man page, which shows a flag's usage alone and
// goes through Markdown: it adds the variables the flag is read from, and
// escapes square brackets, which Markdown would otherwise take for a link
// when a parenthesis follows ("[$SOCKMUX_BAUD] (default: 115200)").
func manUsage(cmds []*cli.Command) {
	escape := strings.NewReplacer("[", `\[`, "]", `\]`)
	for _, cmd := range cmds {
		manUsage(cmd.Subcommands)
		for _, f := range cmd.Flags {
			v := reflect.ValueOf(f)
			if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
				continue
			}
			if u := v.Elem().FieldByName("Usage"); u.IsValid() && u.Kind() == reflect.String && u.CanSet() {
				u.SetString(escape.Replace(u.String() + envHint(helpGOOS, flagEnvVars(f))))
			}
		}
	}
}

// defaultControlHelp is where a link's control socket goes without
// --control, as help on helpGOOS says it.
func defaultControlHelp() string { return control.DefaultSocketHelp(helpGOOS) }
