package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// delegateCommand is "sockmux delegate": DeleGate's SockMux parameters,
// verbatim, run as the equivalent sockmux link.
func delegateCommand() *cli.Command {
	return &cli.Command{
		Name:      "delegate",
		Usage:     "run a link from DeleGate's SockMux parameters (-Phost:port SERVER=sockmux PORT=... SERVER=...,-in)",
		ArgsUsage: "[--print] [OPTIONS] PARAM...",
		Description: `Takes the parameters of a SockMux-DeleGate as they are and runs the same link
as the equivalent "sockmux link" (which it logs, or prints with --print):

  DeleGate                         sockmux link             what
  -Phost:port SERVER=sockmux       --listen host:port       receptor: listen for the other end
  SERVER=sockmux://host:port       --connect host:port      connector: dial the other end
  SERVER=sockmux:comm@PATH         --comm PATH              a serial port or other two-way channel
  SERVER=sockmux:commin@PATH       --commin PATH            read the link from a FIFO
  SERVER=sockmux:commout@PATH      --commout PATH           write the link to a FIFO
  PORT=[host:]port[,...]           --port ...               entrances, routed by the far end
  SERVER=URL,-in[:-:COND]          --server URL[:-:COND]    exit for connections from the far end
  SERVER=telnet,-in (http, socks)  --server telnet          exit to a built-in proxy
  DEST=host:port[/udp]             --dest host:port[/udp]   relay exit
  WIRE=delegate                    --wire delegate          speak DeleGate's own SockMux, to a delegated
  +=PATH                                                    more parameters from a file
  -f -v -vv -vd -vt -vs            --log-level              foreground (always); log levels

COND is -Pport (the entrance port at the far end) or a list of client hosts.
A -P port without a host listens on every address, as DeleGate does; a PORT
item without a host takes the host of the item before it, and the first
listens on 127.0.0.1 only (write PORT=*:9023 for every address). Any other
parameter is an error that names it. The link options below (e.g. --baud 9600
for comm@, --log-level debug) may come before or among the parameters.`,
		SkipFlagParsing: true,
		Flags:           optionFlags(),
		Action:          runDelegate,
	}
}

func runDelegate(c *cli.Context) error {
	args := c.Args().Slice()
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			return cli.ShowCommandHelp(c.Lineage()[1], "delegate")
		}
	}
	plan, printOnly, err := planFromDelegate(args)
	if err != nil {
		return err
	}
	if printOnly {
		_, err := fmt.Fprintln(c.App.Writer, plan.equivalent)
		return err
	}
	return runPlan(plan)
}

// planFromDelegate translates sockmux delegate's arguments: DeleGate
// parameters, sockmux link options, and --print.
func planFromDelegate(args []string) (plan linkPlan, printOnly bool, err error) {
	set := flag.NewFlagSet("delegate", flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range optionFlags() {
		if err := f.Apply(set); err != nil {
			return plan, false, err
		}
	}
	var params, options []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--print":
			printOnly = true
		case strings.HasPrefix(a, "--"):
			name, _, hasValue := strings.Cut(a[2:], "=")
			f := set.Lookup(name)
			if f == nil {
				return plan, false, fmt.Errorf("unknown option %s (sockmux delegate takes the link options of sockmux link, such as --baud and --log-level)", a)
			}
			options = append(options, a)
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				continue // --insecure alone is --insecure=true, as for sockmux link
			}
			if !hasValue {
				if i+1 >= len(args) {
					return plan, false, fmt.Errorf("option %s needs a value", a)
				}
				i++
				options = append(options, args[i])
			}
		default:
			params = append(params, a)
		}
	}
	if err := set.Parse(options); err != nil {
		return plan, false, err
	}
	dg, err := translateDelegate(params)
	if err != nil {
		return plan, false, err
	}
	if dg.logLevel != "" && !isSet(set, "log-level") {
		if err := set.Set("log-level", dg.logLevel); err != nil {
			return plan, false, err
		}
	}
	if options, err = applyWireParam(set, dg.wire, options); err != nil {
		return plan, false, err
	}
	given := map[string]origin{}
	set.Visit(func(f *flag.Flag) { given[f.Name] = fromFlag })
	c := cli.NewContext(nil, set, nil)
	if err := checkGiven(optionSettings(), c, given); err != nil {
		return plan, false, err
	}
	opts, err := readOptions(c)
	if err != nil {
		return plan, false, err
	}
	plan = linkPlan{transport: dg.transport, opts: opts, from: strings.Join(params, " ")}
	if err := plan.addForwarding(dg.ports, dg.rules); err != nil {
		return plan, false, err
	}
	plan.equivalent = dg.equivalent(options)
	return plan, printOnly, nil
}

func isSet(set *flag.FlagSet, name string) bool {
	found := false
	set.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// delegateParams is what DeleGate's parameters say, in sockmux terms.
type delegateParams struct {
	transport transportSpec
	ports     []flagSpec
	rules     []flagSpec
	logLevel  string
	wire      string // WIRE= (wire.go)
}

// translateDelegate translates DeleGate's SockMux parameters. A
// parameter that sockmux cannot honour is an error that names it.
func translateDelegate(params []string) (delegateParams, error) {
	var dg delegateParams
	params, err := expandParamFiles(params, 0)
	if err != nil {
		return dg, err
	}
	var receptor bool
	var listenParam string
	var tunnels []string // the parameters that chose the tunnel
	for _, p := range params {
		name, value, isParam := strings.Cut(p, "=")
		value = unquote(value)
		switch {
		case strings.HasPrefix(p, "-P"):
			if listenParam != "" {
				return dg, fmt.Errorf("%s: a second -P (the first was %s); sockmux listens for the other end on one address", p, listenParam)
			}
			addr, err := delegateListen(p[2:])
			if err != nil {
				return dg, fmt.Errorf("%s: %v", p, err)
			}
			listenParam, dg.transport.listen = p, addr
		case p == "-f":
			// Foreground: sockmux always runs in the foreground.
		case p == "-v":
			dg.logLevel = "info"
		case p == "-vv" || p == "-vd":
			dg.logLevel = "debug"
		case p == "-vt":
			dg.logLevel = "warn"
		case p == "-vs":
			dg.logLevel = "error"
		case !isParam:
			return dg, fmt.Errorf("%q is not a DeleGate parameter sockmux delegate understands (NAME=VALUE, -Phost:port, -f or -v)", p)
		case name == "SERVER":
			rest, isSockmux := cutSockmux(value)
			if !isSockmux {
				if !strings.Contains(value, ",-in") {
					return dg, fmt.Errorf("%s: without \",-in\" this is a DeleGate service of its own, which sockmux cannot run; add \",-in\" to make it the exit for connections from the far end (%s,-in)", p, p)
				}
				dg.rules = append(dg.rules, flagSpec{"server", value})
				continue
			}
			if err := dg.sockmuxServer(p, rest, &receptor); err != nil {
				return dg, err
			}
			tunnels = append(tunnels, p)
		case name == "PORT":
			dg.ports = append(dg.ports, flagSpec{"port", value})
		case name == "DEST":
			dg.rules = append(dg.rules, flagSpec{"dest", value})
		case name == "WIRE":
			dg.wire = value
		default:
			return dg, fmt.Errorf("DeleGate parameter %s is not supported by sockmux delegate: it understands -Phost:port, SERVER=sockmux[://host:port|:comm@PATH|:commin@PATH|:commout@PATH], SERVER=...,-in, PORT=, DEST= and WIRE=; see docs/delegate.md", p)
		}
	}
	t := dg.transport
	switch {
	case receptor && listenParam == "":
		return dg, fmt.Errorf("SERVER=sockmux (the receptor) needs -Phost:port: where to listen for the other end")
	case !receptor && listenParam != "":
		return dg, fmt.Errorf("%s: the port for the other end goes with SERVER=sockmux (the receptor)%s", listenParam, alsoGiven(tunnels))
	case len(tunnels) == 0:
		return dg, fmt.Errorf("no SockMux tunnel: give -Phost:port with SERVER=sockmux, SERVER=sockmux://host:port, SERVER=sockmux:comm@PATH, or SERVER=sockmux:commin@PATH with SERVER=sockmux:commout@PATH")
	case t.commin != "" && t.commout == "":
		return dg, fmt.Errorf("SERVER=sockmux:commin@%s needs SERVER=sockmux:commout@PATH too (the FIFO to write to)", t.commin)
	case t.commout != "" && t.commin == "":
		return dg, fmt.Errorf("SERVER=sockmux:commout@%s needs SERVER=sockmux:commin@PATH too (the FIFO to read from)", t.commout)
	}
	kinds := 0
	for _, v := range []string{t.listen, t.connect, t.comm, t.commin} {
		if v != "" {
			kinds++
		}
	}
	if kinds > 1 {
		return dg, fmt.Errorf("more than one SockMux tunnel: %s; give one", strings.Join(tunnels, " "))
	}
	return dg, nil
}

// expandParamFiles replaces each +=PATH (DeleGate's parameter file) by
// the parameters in the file: whitespace-separated, "#" to the end of a
// line is a comment.
func expandParamFiles(params []string, depth int) ([]string, error) {
	var out []string
	for _, p := range params {
		path, ok := strings.CutPrefix(p, "+=")
		if !ok {
			out = append(out, p)
			continue
		}
		if depth >= 8 {
			return nil, fmt.Errorf("%s: parameter files nest too deep", p)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p, err)
		}
		var inFile []string
		for line := range strings.Lines(string(data)) {
			if i := strings.Index(line, "#"); i >= 0 && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
				line = line[:i]
			}
			inFile = append(inFile, strings.Fields(line)...)
		}
		expanded, err := expandParamFiles(inFile, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, expanded...)
	}
	return out, nil
}

func alsoGiven(tunnels []string) string {
	if len(tunnels) == 0 {
		return ""
	}
	return ", not with " + strings.Join(tunnels, " ")
}

// cutSockmux reports whether a SERVER value names the SockMux tunnel, and
// returns what follows "sockmux".
func cutSockmux(v string) (string, bool) {
	if len(v) < len("sockmux") || !strings.EqualFold(v[:len("sockmux")], "sockmux") {
		return "", false
	}
	rest := v[len("sockmux"):]
	if rest == "" || rest[0] == ':' {
		return rest, true
	}
	return "", false
}

// sockmuxServer takes SERVER=sockmux, sockmux://host:port or
// sockmux:commtype@PATH.
func (dg *delegateParams) sockmuxServer(p, rest string, receptor *bool) error {
	t := &dg.transport
	set := func(field *string, v string) error {
		if *field != "" {
			return fmt.Errorf("%s: given twice", p)
		}
		*field = v
		return nil
	}
	switch {
	case rest == "":
		*receptor = true
		return nil
	case strings.HasPrefix(rest, "://"):
		addr := strings.TrimSuffix(rest[3:], "/")
		if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
			return fmt.Errorf("%s: want SERVER=sockmux://host:port", p)
		}
		return set(&t.connect, addr)
	}
	kind, path, ok := strings.Cut(rest[1:], "@")
	if !ok || path == "" {
		return fmt.Errorf("%s: want SERVER=sockmux, SERVER=sockmux://host:port or SERVER=sockmux:commtype@PATH (commtype: comm, commin, commout)", p)
	}
	switch kind {
	case "comm":
		return set(&t.comm, path)
	case "commin":
		return set(&t.commin, path)
	case "commout":
		return set(&t.commout, path)
	}
	return fmt.Errorf("%s: unknown commtype %q (want comm, commin or commout)", p, kind)
}

// delegateListen turns -P's value into a listen address: a port alone
// means every address, as in DeleGate.
func delegateListen(v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("want -Phost:port or -Pport")
	}
	if strings.Contains(v, ",") {
		return "", fmt.Errorf("sockmux listens for the other end on one port; entrances go in PORT=")
	}
	if !strings.Contains(v, ":") {
		return ":" + v, nil
	}
	return v, nil
}

// unquote drops the double quotes of SERVER="telnet://host,-in" when they
// reach us (from a script that kept them).
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// equivalent is the sockmux link command line that runs the same link.
func (dg delegateParams) equivalent(options []string) string {
	args := []string{"sockmux", "link"}
	t := dg.transport
	for _, f := range []struct{ flag, v string }{{"--listen", t.listen}, {"--connect", t.connect}, {"--comm", t.comm}, {"--commin", t.commin}, {"--commout", t.commout}} {
		if f.v != "" {
			args = append(args, f.flag, f.v)
		}
	}
	for _, p := range dg.ports {
		args = append(args, "--port", p.text)
	}
	for _, r := range dg.rules {
		args = append(args, "--"+r.flag, strings.Replace(r.text, ",-in", "", 1))
	}
	if dg.logLevel != "" && !slices.ContainsFunc(options, func(o string) bool { return strings.HasPrefix(o, "--log-level") }) {
		args = append(args, "--log-level", dg.logLevel)
	}
	args = append(args, options...)
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return strings.Join(args, " ")
}
