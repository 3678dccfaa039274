package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/pipe"
	"github.com/sockmux/sockmux/procdriver"
	"github.com/sockmux/sockmux/serialport"
	"github.com/sockmux/sockmux/tcpdriver"
)

func linkCommand() *cli.Command {
	return newLinkCommand(func(plan linkPlan, args []string) error {
		if plan.config != nil {
			plan.reload = func() (linkPlan, error) { return planFromArgs(args) }
		}
		return runPlan(plan)
	})
}

// newLinkCommand is sockmux link, which works out its plan from the
// command line, the environment and the --config file, and hands it to
// run with the command's arguments.
func newLinkCommand(run func(plan linkPlan, args []string) error) *cli.Command {
	fw := &forwardFlags{}
	settings := linkSettings(fw)
	flags := linkFlags(settings)
	return &cli.Command{
		Name:  "link",
		Usage: "run one end of a link and its forwards",
		UsageText: `sockmux link (--listen ADDR | --connect ADDR | --comm PATH | --commin PATH --commout PATH | --stdio | --exec COMMAND)
       [-L SPEC]... [-R SPEC]... [-D [BIND:]PORT]... [--port SPEC]... [--server RULE]... [--dest DEST]... [options]
sockmux link --listen ADDR --peers FILE [-L SPEC@PEER]... [-R SPEC@PEER]... [-D [BIND:]PORT]... [options]
sockmux link (--comm [NAME=]PATH)... [--comm-glob PATTERN] [-L SPEC@PEER]... [-R SPEC@PEER]... [-D [BIND:]PORT]... [options]`,
		Description: `Runs one end of a link over the transport given, and carries connections
over it. Both ends may forward in both directions at once.

Entrances (connections accepted here cross the link):
  -L [BIND:]PORT:HOST:HOSTPORT[/udp]  the far end connects to HOST:HOSTPORT
  -D [BIND:]PORT                      a SOCKS5/SOCKS4a/HTTP proxy: each client names
                                      its destination, which the far end connects to
  --port [BIND:]PORT[/udp][,...]      the far end's --server/--dest rules decide
                                      (DeleGate's PORT=)
  -R [BIND:]PORT:HOST:HOSTPORT[/udp]  the far end listens on BIND:PORT; this end
                                      connects to HOST:HOSTPORT
BIND defaults to 127.0.0.1; * means every address. Each item of a --port list
may have its own BIND (an item without one takes the one before it), and its
PORT may be a range LO-HI: --port 9011,127.0.0.2:9012,[::1]:9013-9015/udp.

Exits (where connections from the far end go), tried in this order:
  1. this end's own -R forwards, by the listener they came from;
  2. the --server and --dest rules, the first that matches, in the order given:
       --server tcp://HOST:PORT | HOST:PORT | telnet://HOST[:PORT] | http://HOST[:PORT]
       --server socks | http    a built-in SOCKS5/SOCKS4a/HTTP proxy asks the client
       --server telnet          a prompt asks the user for "host port"
       --dest HOST:PORT[/udp]   relay (DeleGate's DEST=)
     followed by conditions: RULE:-:-P9023 (entered at port 9023 at the far end),
     RULE:-:10.0.0.0/8,hostA (client hosts; ! excludes), or both;
  3. the destination the far end's -L or -D asked for;
  4. none: the connection is closed and both ends log "no route for ...".

When the transport breaks (a cable pulled, a connection cut, the other program
restarted on the same pipes), the link waits for it, reopens it and resumes:
open connections carry on with nothing lost. A client that connects while the
link is down waits up to --link-wait for it.

A hub (--listen ADDR --peers FILE) serves many peers at once, each with its
own session, key and forwards: each connecting end gives its --name (and its
key from FILE, one line a peer: NAME KEY); the hub's forwards name their peer
(-L 2222:127.0.0.1:22@cabinet-17), and its -D reaches HOST at peer PEER as
HOST.PEER.sockmux. SIGHUP reads FILE again: a peer removed is disconnected.

Several --comm (or NAME=PATH, or --comm-glob PATTERN) make a hub of serial
ports: each port is a peer named after its path (/dev/ttyUSB0 is ttyUSB0)
or as given (--comm board-2=/dev/ttyUSB1), its far end a plain --comm end;
forwards name it as on a TCP hub (-L 2200:127.0.0.1:22@ttyUSB0). A port
missing at start is waited for; --comm-glob '/dev/serial/by-id/*' adds
adapters as they are plugged in. A single --comm PATH is a plain end.

Every flag can also come from its environment variable (SOCKMUX_ and the flag's
name in capitals, - as _: SOCKMUX_DEAD_TIMEOUT=10s) or from the --config file
(YAML; keys are the long flag names). A flag wins over its variable, which wins
over the file. On SIGHUP the link reads the file again and applies changed
forwards, --server/--dest rules and --allow without dropping the link.`,
		Flags: flags,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q (forwards go with -L, -R, -D, --port, --server or --dest)", c.Args().First())
			}
			cf, overridden, err := resolveFlags(c, settings)
			if err != nil {
				return err
			}
			plan, err := planFromFlags(c, fw)
			if err != nil {
				return err
			}
			if cf != nil {
				plan.config = &planConfig{path: cf.path, keys: len(cf.entries), overridden: overridden, settings: settingsOf(c, settings)}
			}
			return run(plan, commandArgs(c))
		},
	}
}

// forwardFlags collects the forwarding flags. --port, --server and --dest
// keep each value whole (a host list has commas) and the rules keep the
// order they were given in, across both flags: the first match wins.
type forwardFlags struct {
	ports specList
	rules specList
	comms specList // --comm, each value whole (a path may hold a comma)
}

// specList is a repeatable flag's values in order.
type specList struct{ specs []flagSpec }

// flagSpec is one value of a repeatable flag.
type flagSpec struct{ flag, text string }

// specValue is the flag.Value of one flag that appends to a specList.
type specValue struct {
	list *specList
	flag string
	env  string // its variable (settings.go), read by specEnv
}

func (v *specValue) Set(s string) error {
	v.list.specs = append(v.list.specs, flagSpec{v.flag, s})
	return nil
}

func (v *specValue) String() string { return "" }

// Get is the flag's values (flag.Getter), for cli.Context.Value.
func (v *specValue) Get() any { return v.values() }

// values are the flag's values in its list.
func (v *specValue) values() []string {
	var out []string
	for _, s := range v.list.specs {
		if s.flag == v.flag {
			out = append(out, s.text)
		}
	}
	return out
}

// linkPlan is everything a link end runs, whichever command described it.
type linkPlan struct {
	transport transportSpec
	forwards  []forward.Forward
	rules     []forward.Rule
	opts      linkOptions
	ops       opsOptions
	// from, when set, is what the plan was translated from, logged with
	// the equivalent sockmux link command.
	from       string
	equivalent string
	// config, when set, is the --config file the plan read; reload works
	// out the plan again (on SIGHUP).
	config *planConfig
	reload func() (linkPlan, error)
}

// transportSpec names the transport: exactly one of listen, connect,
// comm, commin with commout, stdio or exec.
type transportSpec struct {
	listen, connect, comm, commin, commout string
	peers                                  string // --peers: --listen is a hub (hub.go)
	stdio                                  bool
	exec                                   string
	// ports are the --comm values of a hub of ports (comms.go): several
	// --comm, a NAME=PATH one, or any with --comm-glob; comm is "" then.
	ports    []string
	commGlob string // --comm-glob
}

// portHub reports whether the transport is a hub of serial ports.
func (t transportSpec) portHub() bool { return len(t.ports) > 0 || t.commGlob != "" }

// opsOptions are the values of the Operations settings (settings.go).
type opsOptions struct {
	name, control, metrics string
}

// linkOptions are the tunables of the option settings (optionFlags).
type linkOptions struct {
	logLevel                                              string
	serial                                                serialport.Mode
	serialOpts                                            serialport.Options
	linkWait, dialTimeout, udpTimeout                     time.Duration
	udpSessions                                           int
	keepAlive, deadTimeout, handshakeTimeout, gracePeriod time.Duration
	resumeTimeout                                         time.Duration
	secretFile                                            string
	maxStreams                                            int
	compress                                              link.Compression
	fec                                                   link.FECMode
	fecBlock                                              int
	halfDuplex                                            bool
	insecure                                              bool
	allow                                                 []string
	wire                                                  string // --wire (wire.go)
	// --baud auto (autobaud.go): the port starts at serial.Baud, which
	// is baudStart.
	autoBaud           bool
	baudStart, baudMax int
}

// flagReader is what reading the settings needs; a *cli.Context is one.
type flagReader interface {
	String(name string) string
	Int(name string) int
	Duration(name string) time.Duration
	Bool(name string) bool
	StringSlice(name string) []string
}

// readOptions reads the options, which their checks passed (settings.go):
// what fails here is a value the check and the parser disagree on.
func readOptions(c flagReader) (linkOptions, error) {
	o := linkOptions{
		logLevel:  c.String("log-level"),
		baudStart: c.Int("baud-start"),
		baudMax:   c.Int("baud-max"),
		serial: serialport.Mode{
			DataBits: c.Int("data-bits"),
			Parity:   c.String("parity"),
			StopBits: c.String("stop-bits"),
			Flow:     c.String("flow"),
		},
		linkWait:         c.Duration("link-wait"),
		dialTimeout:      c.Duration("dial-timeout"),
		udpTimeout:       c.Duration("udp-timeout"),
		udpSessions:      c.Int("udp-sessions"),
		keepAlive:        c.Duration("keepalive"),
		deadTimeout:      c.Duration("dead-timeout"),
		resumeTimeout:    c.Duration("resume-timeout"),
		handshakeTimeout: c.Duration("handshake-timeout"),
		gracePeriod:      c.Duration("grace"),
		secretFile:       c.String("secret-file"),
		maxStreams:       c.Int("max-streams"),
		insecure:         c.Bool("insecure"),
		halfDuplex:       c.Bool("half-duplex"),
		allow:            c.StringSlice("allow"),
		wire:             c.String("wire"),
	}
	var err error
	if o.serial.Baud, o.autoBaud, err = parseBaud(c.String("baud")); err != nil {
		return o, err
	}
	if o.autoBaud {
		o.serial.Baud = o.baudStart
	}
	if o.serialOpts, err = readSerialOptions(c); err != nil {
		return o, err
	}
	if o.compress, err = link.ParseCompression(c.String("compress")); err != nil {
		return o, fmt.Errorf("--compress: %w", err)
	}
	if o.fec, err = link.ParseFEC(c.String("fec")); err != nil {
		return o, fmt.Errorf("--fec: %w", err)
	}
	o.fecBlock = c.Int("fec-block")
	return o, nil
}

// readSerialOptions reads --dtr, --rts, --carrier and --low-latency.
func readSerialOptions(c flagReader) (serialport.Options, error) {
	var o serialport.Options
	var err error
	if o.DTR, err = serialport.ParseLevel("--dtr", c.String("dtr")); err != nil {
		return o, err
	}
	if o.RTS, err = serialport.ParseLevel("--rts", c.String("rts")); err != nil {
		return o, err
	}
	if o.Carrier, err = serialport.ParseCarrier(c.String("carrier")); err != nil {
		return o, err
	}
	o.LowLatency = c.Bool("low-latency")
	before, after := c.Duration("rs485-delay-before"), c.Duration("rs485-delay-after")
	switch {
	case c.Bool("rs485"):
		o.RS485 = &serialport.RS485{DelayBefore: before, DelayAfter: after}
	case before != 0 || after != 0:
		return o, errors.New("--rs485-delay-before and --rs485-delay-after need --rs485")
	}
	return o, nil
}

// planFromFlags reads sockmux link's flags.
func planFromFlags(c *cli.Context, fw *forwardFlags) (linkPlan, error) {
	opts, err := readOptions(c)
	if err != nil {
		return linkPlan{}, err
	}
	plan := linkPlan{
		transport: transportSpec{
			listen: c.String("listen"), connect: c.String("connect"), peers: c.String("peers"),
			commin: c.String("commin"), commout: c.String("commout"),
			stdio: c.Bool("stdio"), exec: c.String("exec"), commGlob: c.String("comm-glob"),
		},
		opts: opts,
		ops:  opsOptions{name: c.String("name"), control: c.String("control"), metrics: c.String("metrics")},
	}
	comms := (&specValue{list: &fw.comms, flag: "comm"}).values()
	if len(comms) == 1 && plan.transport.commGlob == "" && !commNamed(comms[0]) {
		plan.transport.comm = comms[0] // one port: a plain end, as ever
	} else {
		plan.transport.ports = comms
	}
	for _, spec := range c.StringSlice("local") {
		f, err := forward.ParseForward(forward.Local, spec)
		if err != nil {
			return plan, fmt.Errorf("-L: %w", err)
		}
		plan.forwards = append(plan.forwards, f)
	}
	for _, spec := range c.StringSlice("remote") {
		f, err := forward.ParseForward(forward.Remote, spec)
		if err != nil {
			return plan, fmt.Errorf("-R: %w", err)
		}
		plan.forwards = append(plan.forwards, f)
	}
	for _, spec := range c.StringSlice("dynamic") {
		f, err := forward.ParseForward(forward.Dynamic, spec)
		if err != nil {
			return plan, fmt.Errorf("-D: %w", err)
		}
		plan.forwards = append(plan.forwards, f)
	}
	if err := plan.addForwarding(fw.ports.specs, fw.rules.specs); err != nil {
		return plan, err
	}
	return plan, nil
}

// addForwarding parses --port specs and --server/--dest rules, in order.
func (p *linkPlan) addForwarding(ports, rules []flagSpec) error {
	for _, s := range ports {
		fs, err := forward.ParseEntrances(s.text)
		if err != nil {
			return fmt.Errorf("--port: %w", err)
		}
		p.forwards = append(p.forwards, fs...)
	}
	for _, s := range rules {
		parse := forward.ParseRule
		if s.flag == "dest" {
			parse = forward.ParseDest
		}
		r, err := parse(s.text)
		if err != nil {
			return fmt.Errorf("--%s: %w", s.flag, err)
		}
		p.rules = append(p.rules, r)
	}
	return nil
}

// closer is a driver that holds something to release at exit.
type closer interface{ Close() error }

// openDriver checks and opens the transport; keyed tells whether the link
// authenticates its peer (--secret-file).
func openDriver(t transportSpec, keyed bool, serial serialport.Mode, serialOpts serialport.Options, log *slog.Logger) (link.Driver, error) {
	var chosen []string
	stdio := ""
	if t.stdio {
		stdio = "on"
	}
	for _, f := range []struct{ name, val string }{{"--listen", t.listen}, {"--connect", t.connect}, {"--comm", t.comm}, {"--commin", t.commin}, {"--stdio", stdio}, {"--exec", t.exec}} {
		if f.val != "" {
			chosen = append(chosen, f.name)
		}
	}
	if t.commout != "" && t.commin == "" {
		chosen = append(chosen, "--commout")
	}
	switch {
	case len(chosen) == 0:
		return nil, errors.New("no transport: give --listen, --connect, --comm, --commin with --commout, --stdio or --exec")
	case len(chosen) > 1:
		return nil, fmt.Errorf("more than one transport: %v; give exactly one", chosen)
	}
	switch {
	case t.listen != "":
		// Without a key anyone who connects is the peer anyway; with one,
		// a stranger must not be able to kick the peer off.
		r, err := tcpdriver.Listen(t.listen, tcpdriver.ListenOptions{Replace: !keyed})
		if err != nil {
			return nil, fmt.Errorf("--listen: %w", err)
		}
		return r, nil
	case t.connect != "":
		return &tcpdriver.Connector{Addr: t.connect}, nil
	case t.stdio:
		return procdriver.NewStdio(), nil
	case t.exec != "":
		return procdriver.NewExec(t.exec, log), nil
	case t.commin != "":
		if t.commout == "" {
			return nil, errors.New("--commin needs --commout (the pipe to write to)")
		}
		return pipe.NewPair(t.commin, t.commout, log)
	case t.commout != "":
		return nil, errors.New("--commout needs --commin (the pipe to read from)")
	}
	if !serialport.IsSerial(t.comm) {
		return pipe.NewComm(t.comm, log)
	}
	return serialport.NewWith(t.comm, serial, serialOpts, log)
}

// runPlan runs a link end until SIGINT or SIGTERM.
func runPlan(plan linkPlan) error {
	defer startProfile()()
	log, err := newLogger(plan.opts.logLevel)
	if err != nil {
		return err
	}
	if plan.transport.peers != "" || plan.transport.portHub() {
		return runHub(plan, log)
	}
	for _, fw := range plan.forwards {
		if fw.Peer != "" {
			return fmt.Errorf("%v is addressed to peer %s: only a hub (--listen with --peers, or several --comm) has peers", fw, fw.Peer)
		}
	}
	var secret []byte
	if plan.opts.secretFile != "" {
		if secret, err = readSecret(plan.opts.secretFile); err != nil {
			return err
		}
	}
	if err := checkWire(plan, secret != nil); err != nil {
		return err
	}
	if err := checkExposure(plan.transport.listen, secret != nil, plan.opts.insecure); err != nil {
		return err
	}
	allow, err := forward.ParseAllow(plan.opts.allow)
	if err != nil {
		return err
	}
	if plan.opts.halfDuplex && plan.transport.comm == "" {
		return errors.New("--half-duplex is for a serial line (--comm): TCP, pipes and --stdio carry both directions at once")
	}
	if err := checkAutoBaud(plan); err != nil {
		return err
	}
	drv, err := openDriver(plan.transport, secret != nil, plan.opts.serial, plan.opts.serialOpts, log)
	if err != nil {
		return err
	}
	var ab *autoBaud
	var services map[string]func(context.Context, *mux.Stream)
	if sd, ok := drv.(*serialport.Driver); ok && plan.opts.autoBaud {
		ab = newAutoBaud(plan, sd, log)
		services = ab.services()
	}
	if plan.from != "" {
		log.Info("running DeleGate parameters as a sockmux link", "delegate", plan.from, "equivalent", plan.equivalent)
	}

	ep, err := newEndpoint(plan, endpoint.Options{
		Driver: drv,
		Link: link.Config{
			KeepAlive:        plan.opts.keepAlive,
			DeadTimeout:      plan.opts.deadTimeout,
			ResumeTimeout:    plan.opts.resumeTimeout,
			HandshakeTimeout: plan.opts.handshakeTimeout,
			Secret:           secret,
			Name:             helloName(plan, log),
			Compress:         plan.opts.compress,
			FEC:              plan.opts.fec,
			FECBlock:         plan.opts.fecBlock,
			HalfDuplex:       plan.opts.halfDuplex,
		},
		Mux: mux.Config{
			MaxStreams:  plan.opts.maxStreams,
			MaxBuffered: max(mux.DefaultMaxBuffered, plan.opts.maxStreams*mux.InitialWindow),
		},
		Forward: forward.Config{
			LinkWait:       plan.opts.linkWait,
			DialTimeout:    plan.opts.dialTimeout,
			Rules:          plan.rules,
			UDPTimeout:     plan.opts.udpTimeout,
			UDPMaxSessions: plan.opts.udpSessions,
			Allow:          allow,
			Services:       services,
		},
		Grace:  plan.opts.gracePeriod,
		Logger: log,
	})
	if err != nil {
		if cl, ok := drv.(closer); ok {
			cl.Close()
		}
		return namedByFlags(err)
	}
	fwd := ep.Forwarder
	if ab != nil {
		ab.bind(ep)
	}
	switch {
	case plan.opts.wire == endpoint.WireDeleGate:
		// The DeleGate wire has no authentication: its warning said so.
	case secret == nil:
		log.Info("authentication off: no --secret-file")
	default:
		log.Info("authentication on: the peer must hold the same key; the link is encrypted")
	}
	for _, fw := range plan.forwards {
		if err := fwd.Add(fw); err != nil {
			ep.Close()
			return err
		}
	}
	for i, r := range plan.rules {
		log.Info("exit rule", "n", i+1, "rule", r.String())
	}
	var hup chan os.Signal
	if plan.reload != nil {
		log.Info("configuration file read", "config", plan.config.path, "keys", plan.config.keys)
		if len(plan.config.overridden) > 0 {
			log.Info("flags or SOCKMUX_* variables override the configuration file", "keys", strings.Join(plan.config.overridden, ", "))
		}
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opsCtx, cancelOps := context.WithCancel(context.Background())
	defer cancelOps()
	opsDone, err := startOps(opsCtx, plan, ep, ab, log)
	if err != nil {
		ep.Close()
		return err
	}
	defer func() { <-opsDone }()
	defer cancelOps()
	// On SIGINT or SIGTERM the endpoint shuts down: no new connections,
	// those under way get the grace period, the peer is told, and Run
	// returns.
	runDone := make(chan error, 1)
	go func() { runDone <- ep.Run(ctx) }()
	if ab != nil {
		go ab.run(opsCtx)
	}
	go func() {
		<-ctx.Done()
		stop() // a second signal now ends the process at once
	}()
	var stdioDone <-chan struct{}
	if sd, ok := drv.(*procdriver.Stdio); ok {
		stdioDone = sd.Done()
	}
	logStarted(log, ep)

	var result error
wait:
	for {
		select {
		case <-hup:
			reloadPlan(&plan, fwd, log)
		case err := <-runDone:
			if ctx.Err() == nil && result == nil {
				return err // the link ended by itself
			}
			break wait
		case <-stdioDone:
			log.Info("standard input/output ended; stopping")
			ep.Stop(0, "peer's stdio ended")
			stdioDone, result = nil, procdriver.ErrStdioEnded
		}
	}
	if result == nil {
		log.Info("stopped")
	}
	return result
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkExposure refuses to listen where other hosts can reach the link
// without authentication, unless the user insists.
func checkExposure(listen string, keyed, insecure bool) error {
	if listen == "" || keyed || insecure {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", listen, err)
	}
	if isLoopback(host) {
		return nil
	}
	return fmt.Errorf("--listen %s accepts peers from other hosts, and without --secret-file anyone who connects gets a tunnel into this one; "+
		"give both ends the same key (sockmux keygen FILE, then --secret-file FILE), or --insecure to run without one", listen)
}

// isLoopback reports whether host names only this machine.
func isLoopback(host string) bool {
	if host == "" {
		return false // every address
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	addrs, err := net.LookupIP(host)
	if err != nil || len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if !a.IsLoopback() {
			return false
		}
	}
	return true
}
