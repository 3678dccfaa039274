package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/autobaud"
	"github.com/sockmux/sockmux/fec"
	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/serialport"
)

// The settings of sockmux link, in one table: each entry is a flag, the
// environment variable and config-file key it may also come from, whether
// SIGHUP applies it to a running link, and the check of its values. The
// command's flags (and sockmux delegate's), the environment lookup, the
// config file's keys and kinds, reload and validation are all read from
// it. Each value is checked once, where it enters (the command line, a
// variable, the file), and a bad one is an error that names the flag,
// variable or key (and line).
//
// To add a setting, add one entry where its neighbours are, or write a
// function returning the entry in a file of its own and list its call
// here; then give it to the plan (planFromFlags, readOptions), add it to
// docs/sockmux.yaml (a test checks that every key is there) and run
// make man.

// setting is one entry of the table.
type setting struct {
	// flag is the command-line flag: its long name first, then its
	// aliases; its usage, help category and default.
	flag cli.Flag
	// env is the environment variable the setting is read from when the
	// command line does not give it ("" for none).
	env string
	// key is the setting's key in the --config file ("" for none).
	key string
	// reload: SIGHUP applies a changed value to the running link (the
	// forwards, the exit rules and allow); any other setting keeps its
	// running value until a restart.
	reload bool
	// check checks one value (each value of a repeatable flag), given as
	// text; nil when parsing the flag's kind (a number, a duration...)
	// is all there is to check. A reason error is about the value as
	// given; any other error names the value itself.
	check func(v string) error
	// option: a tuning option, which sockmux delegate takes too.
	option bool
	// delegateEnv: sockmux delegate reads env too (the key file, which
	// docs/security.md lets any sockmux command take from its variable).
	delegateEnv bool
	// example is a value to show in the error for a list key whose
	// values are not strings.
	example string
	// field is the field of link.Config or mux.Config the setting fills
	// ("link.KeepAlive"), so that an error of the layer's Verify
	// (endpoint.New) names the flag: namedByFlags.
	field string
}

// linkSettings is the table. fw collects the values of --port, --server
// and --dest, which keep their order across flags.
func linkSettings(fw *forwardFlags) []setting {
	return []setting{
		// Transport: exactly one (openDriver).
		{flag: &cli.StringFlag{Name: "listen", Usage: "be the receptor: listen for the other end on `ADDR` (host:port)", Category: "Transport"},
			env: "SOCKMUX_LISTEN", key: "listen", check: hostPort},
		{flag: &cli.StringFlag{Name: "connect", Usage: "be the connector: dial the other end at `ADDR` (host:port), again whenever it drops", Category: "Transport"},
			env: "SOCKMUX_CONNECT", key: "connect", check: hostPort},
		{flag: &cli.GenericFlag{Name: "comm", Value: &specValue{list: &fw.comms, flag: "comm"}, Usage: "one bidirectional channel: a serial port (/dev/ttyUSB0, COM3, or a USB adapter by identity, usb:VID:PID:SERIAL as sockmux ports prints it), a character device, a Unix socket or a Windows named pipe at `PATH`; given more than once (or as NAME=PATH), each port is a peer of a hub, named NAME or after its path (ttyUSB0), that forwards address as @NAME", Category: "Transport"},
			env: "SOCKMUX_COMM", key: "comm", check: commSpec, example: "/dev/ttyUSB0"},
		{flag: &cli.StringFlag{Name: "comm-glob", Usage: "be a hub of serial ports: each path matching `PATTERN` (such as '/dev/serial/by-id/*', matched every second) is a peer named after it, picked up as it is plugged in", Category: "Transport"},
			env: "SOCKMUX_COMM_GLOB", key: "comm-glob", check: globPattern},
		{flag: &cli.StringFlag{Name: "commin", Usage: "read the link from the named pipe (FIFO) at `PATH`; created if missing", Category: "Transport"},
			env: "SOCKMUX_COMMIN", key: "commin"},
		{flag: &cli.StringFlag{Name: "commout", Usage: "write the link to the named pipe (FIFO) at `PATH`; created if missing", Category: "Transport"},
			env: "SOCKMUX_COMMOUT", key: "commout"},
		{flag: &cli.BoolFlag{Name: "stdio", Usage: "the link on standard input and output (the far end runs e.g. ssh host sockmux link --stdio); sockmux exits when they end", Category: "Transport"},
			env: "SOCKMUX_STDIO", key: "stdio"},
		{flag: &cli.StringFlag{Name: "peers", Usage: "with --listen, be a hub for many peers at once: `FILE` lists each peer's name and key, one line a peer (NAME KEY); each connecting end gives its --name; SIGHUP reads FILE again", Category: "Transport"},
			env: "SOCKMUX_PEERS", key: "peers"},
		{flag: &cli.StringFlag{Name: "exec", Usage: "the link over the standard input and output of `COMMAND` (run with sh -c), restarted with backoff whenever it exits; its stderr goes to the log", Category: "Transport"},
			env: "SOCKMUX_EXEC", key: "exec"},

		// Forwards and exit rules: SIGHUP applies them.
		{flag: &cli.StringSliceFlag{Name: "local", Aliases: []string{"L"}, Usage: "forward `SPEC` = [BIND:]PORT:HOST:HOSTPORT[/udp] from here to the far end (repeatable)", Category: "Forwarding"},
			env: "SOCKMUX_LOCAL", key: "local", reload: true, check: forwardSpec(forward.Local), example: "8080:127.0.0.1:80"},
		{flag: &cli.StringSliceFlag{Name: "remote", Aliases: []string{"R"}, Usage: "forward `SPEC` = [BIND:]PORT:HOST:HOSTPORT[/udp] from the far end to here (repeatable)", Category: "Forwarding"},
			env: "SOCKMUX_REMOTE", key: "remote", reload: true, check: forwardSpec(forward.Remote), example: "8080:127.0.0.1:80"},
		{flag: &cli.StringSliceFlag{Name: "dynamic", Aliases: []string{"D"}, Usage: "a local SOCKS5/SOCKS4a/HTTP proxy on `PORT` ([BIND:]PORT); the far end connects where each client asks (repeatable)", Category: "Forwarding"},
			env: "SOCKMUX_DYNAMIC", key: "dynamic", reload: true, check: forwardSpec(forward.Dynamic), example: "1080"},
		{flag: &cli.GenericFlag{Name: "port", Value: &specValue{list: &fw.ports, flag: "port"}, Usage: "entrances `PORTS` = [BIND:]PORT[-PORT][/udp][,...] whose connections the far end's rules route (repeatable; DeleGate's PORT=)", Category: "Forwarding"},
			env: "SOCKMUX_PORT", key: "port", reload: true, check: parsed(forward.ParseEntrances), example: "9023"},
		{flag: &cli.GenericFlag{Name: "server", Value: &specValue{list: &fw.rules, flag: "server"}, Usage: "exit `RULE` for connections from the far end: tcp://HOST:PORT, HOST:PORT, telnet://HOST, http://HOST, or socks, http, telnet for a built-in proxy; :-:-PPORT and :-:HOSTLIST limit it (repeatable; DeleGate's SERVER=...,-in)", Category: "Forwarding"},
			env: "SOCKMUX_SERVER", key: "server", reload: true, check: parsed(forward.ParseRule), example: "telnet://host:23"},
		{flag: &cli.GenericFlag{Name: "dest", Value: &specValue{list: &fw.rules, flag: "dest"}, Usage: "exit `DEST` = HOST:PORT[/udp] for connections from the far end (repeatable; DeleGate's DEST=)", Category: "Forwarding"},
			env: "SOCKMUX_DEST", key: "dest", reload: true, check: parsed(forward.ParseDest), example: "host:53/udp"},

		// Options: sockmux delegate takes them too.
		{flag: &cli.StringFlag{Name: "baud", Value: "115200", Usage: "serial line speed in bits per second, or auto: both ends start at --baud-start and step up to the fastest rate the ports accept and the line carries, verified both ways, and step down when it degrades (both ends need auto)", Category: "Serial line"},
			env: "SOCKMUX_BAUD", key: "baud", option: true, check: baudValue},
		{flag: &cli.IntFlag{Name: "baud-start", Value: autobaud.DefaultStart, Usage: "with --baud auto: the rate both ends start at, and return to when the line falls silent (a far end with a fixed --baud must run at it)", Category: "Serial line"},
			env: "SOCKMUX_BAUD_START", key: "baud-start", option: true, check: positive},
		{flag: &cli.IntFlag{Name: "baud-max", Usage: "with --baud auto: the fastest rate to try (default: any up to 4000000)", Category: "Serial line"},
			env: "SOCKMUX_BAUD_MAX", key: "baud-max", option: true, check: notNegativeInt},
		{flag: &cli.IntFlag{Name: "data-bits", Value: 8, Usage: "serial data bits (sockmux needs 8)", Category: "Serial line"},
			env: "SOCKMUX_DATA_BITS", key: "data-bits", option: true, check: serialMode("must be 5, 6, 7 or 8", func(m *serialport.Mode, v string) { m.DataBits, _ = strconv.Atoi(v) })},
		{flag: &cli.StringFlag{Name: "parity", Value: "none", Usage: "serial parity: none, odd, even, mark or space", Category: "Serial line"},
			env: "SOCKMUX_PARITY", key: "parity", option: true, check: serialMode("want one of none, odd, even, mark, space", func(m *serialport.Mode, v string) { m.Parity = v })},
		{flag: &cli.StringFlag{Name: "stop-bits", Value: "1", Usage: "serial stop bits: 1, 1.5 or 2", Category: "Serial line"},
			env: "SOCKMUX_STOP_BITS", key: "stop-bits", option: true, check: serialMode("want one of 1, 1.5, 2", func(m *serialport.Mode, v string) { m.StopBits = v })},
		{flag: &cli.StringFlag{Name: "flow", Value: "none", Usage: "serial flow control: none or rtscts", Category: "Serial line"},
			env: "SOCKMUX_FLOW", key: "flow", option: true, check: serialMode("want one of none, rtscts", func(m *serialport.Mode, v string) { m.Flow = v })},
		{flag: &cli.StringFlag{Name: "dtr", Usage: "set the serial DTR line `on|off` right after open and keep it so, also across close (default: raised, as usual); --dtr off --rts off spares an ESP32 board the reset", Category: "Serial line"},
			env: "SOCKMUX_DTR", key: "dtr", option: true, check: lineLevel},
		{flag: &cli.StringFlag{Name: "rts", Usage: "set the serial RTS line `on|off` right after open and keep it so, also across close (default: raised, as usual)", Category: "Serial line"},
			env: "SOCKMUX_RTS", key: "rts", option: true, check: lineLevel},
		{flag: &cli.StringFlag{Name: "carrier", Usage: "treat the loss of the input `LINE` dcd, dsr or cts as an unplugged cable at once, and wait for it to come back (where the cable wires it)", Category: "Serial line"},
			env: "SOCKMUX_CARRIER", key: "carrier", option: true, check: carrierLine},
		{flag: &cli.BoolFlag{Name: "half-duplex", Usage: "the line is one bus for both directions (RS-485 two-wire, a radio modem): the ends take turns and ignore their own echo; both ends need it", Category: "Serial line"},
			env: "SOCKMUX_HALF_DUPLEX", key: "half-duplex", option: true, field: "link.HalfDuplex"},
		{flag: &cli.BoolFlag{Name: "rs485", Usage: "switch the serial port into the kernel's RS-485 mode: RTS enables the line driver while sending (Linux; adapters with automatic direction control need only --half-duplex)", Category: "Serial line"},
			env: "SOCKMUX_RS485", key: "rs485", option: true},
		{flag: &cli.DurationFlag{Name: "rs485-delay-before", Usage: "with --rs485: raise RTS this long before sending (0 to 100ms)", Category: "Serial line"},
			env: "SOCKMUX_RS485_DELAY_BEFORE", key: "rs485-delay-before", option: true, check: rs485Delay},
		{flag: &cli.DurationFlag{Name: "rs485-delay-after", Usage: "with --rs485: keep RTS raised this long after sending (0 to 100ms)", Category: "Serial line"},
			env: "SOCKMUX_RS485_DELAY_AFTER", key: "rs485-delay-after", option: true, check: rs485Delay},
		{flag: &cli.BoolFlag{Name: "low-latency", Usage: "ask a USB serial adapter for low receive latency: FTDI latency_timer 1 ms, ASYNC_LOW_LATENCY (Linux; logs what it did)", Category: "Serial line"},
			env: "SOCKMUX_LOW_LATENCY", key: "low-latency", option: true},
		{flag: &cli.DurationFlag{Name: "link-wait", Value: 30 * time.Second, Usage: "how long a client that connects while the link is down waits for it", Category: "Forwarding"},
			env: "SOCKMUX_LINK_WAIT", key: "link-wait", option: true, check: notNegative},
		{flag: &cli.DurationFlag{Name: "dial-timeout", Value: 10 * time.Second, Usage: "how long to wait for a destination to accept a connection", Category: "Forwarding"},
			env: "SOCKMUX_DIAL_TIMEOUT", key: "dial-timeout", option: true, check: notNegative},
		{flag: &cli.DurationFlag{Name: "udp-timeout", Value: 180 * time.Second, Usage: "end a UDP client's session after this much silence both ways", Category: "Forwarding"},
			env: "SOCKMUX_UDP_TIMEOUT", key: "udp-timeout", option: true, check: positiveDuration},
		{flag: &cli.IntFlag{Name: "udp-sessions", Value: 1024, Usage: "most UDP client addresses served at once by one listener; at the limit the longest idle one ends", Category: "Forwarding"},
			env: "SOCKMUX_UDP_SESSIONS", key: "udp-sessions", option: true, check: positive},
		{flag: &cli.DurationFlag{Name: "keepalive", Usage: "ping the peer after this much silence (default: 1s on serial lines, 10s otherwise)", Category: "Link"},
			env: "SOCKMUX_KEEPALIVE", key: "keepalive", option: true, field: "link.KeepAlive", check: notNegative},
		{flag: &cli.DurationFlag{Name: "resume-timeout", Value: 10 * time.Minute, Usage: "end the session (reset its connections) after the link has been down this long; 0 waits for ever", Category: "Link"},
			env: "SOCKMUX_RESUME_TIMEOUT", key: "resume-timeout", option: true, field: "link.ResumeTimeout", check: notNegative},
		{flag: &cli.DurationFlag{Name: "dead-timeout", Usage: "reopen the transport after hearing nothing for this long (default: 5s on serial lines, 30s otherwise)", Category: "Link"},
			env: "SOCKMUX_DEAD_TIMEOUT", key: "dead-timeout", option: true, field: "link.DeadTimeout", check: notNegative},
		{flag: &cli.DurationFlag{Name: "handshake-timeout", Value: 10 * time.Second, Usage: "give up a transport whose peer does not complete the handshake in this time, and open it again", Category: "Link"},
			env: "SOCKMUX_HANDSHAKE_TIMEOUT", key: "handshake-timeout", option: true, field: "link.HandshakeTimeout", check: notNegative},
		{flag: &cli.DurationFlag{Name: "grace", Value: 5 * time.Second, Usage: "on SIGINT/SIGTERM, how long connections under way may finish", Category: "Link"},
			env: "SOCKMUX_GRACE", key: "grace", option: true, check: notNegative},
		{flag: &cli.StringFlag{Name: "compress", Value: "auto", Usage: "compress what crosses the link: auto (strongest on serial lines, off on TCP and pipes), off, fast or best; used when both ends allow it", Category: "Link"},
			env: "SOCKMUX_COMPRESS", key: "compress", option: true, field: "link.Compress", check: compression},
		{flag: &cli.StringFlag{Name: "fec", Value: "auto", Usage: "forward error correction on serial lines: auto (each direction turns it on, sizes it and turns it off by the error rate it measures) or off; used when both ends allow it", Category: "Link"},
			env: "SOCKMUX_FEC", key: "fec", option: true, field: "link.FEC", check: fecMode},
		{flag: &cli.IntFlag{Name: "fec-block", Usage: "the FEC codeword length this end reads, 32 to 255 bytes (default: 64 below 19200 baud, 255 above: a keystroke waits for a whole block)", Category: "Link"},
			env: "SOCKMUX_FEC_BLOCK", key: "fec-block", option: true, field: "link.FECBlock", check: fecBlock},
		{flag: &cli.IntFlag{Name: "max-streams", Value: mux.DefaultMaxStreams, Usage: "most connections open over the link at once; each may hold up to 64 KiB of received data, so this also bounds the link's memory", Category: "Link"},
			env: "SOCKMUX_MAX_STREAMS", key: "max-streams", option: true, field: "mux.MaxStreams", check: between(1, mux.MaxStreamsLimit)},
		{flag: &cli.StringFlag{Name: "secret-file", Usage: "authenticate the peer with the shared key in `FILE` (sockmux keygen FILE) and encrypt the link; both ends need the same file", Category: "Security"},
			env: "SOCKMUX_SECRET_FILE", key: "secret-file", option: true, field: "link.Secret", delegateEnv: true},
		{flag: &cli.BoolFlag{Name: "insecure", Usage: "allow --listen on an address other hosts can reach without --secret-file", Category: "Security"},
			env: "SOCKMUX_INSECURE", key: "insecure", option: true},
		{flag: &cli.StringSliceFlag{Name: "allow", Usage: "let streams from the far end reach only `DEST` = HOST|CIDR[:PORT[-PORT]] (repeatable; default: anywhere)", Category: "Security"},
			env: "SOCKMUX_ALLOW", key: "allow", reload: true, option: true, check: allowDest, example: "10.0.0.0/8:22"},
		{flag: wireFlag(), env: "SOCKMUX_WIRE", key: "wire", option: true, check: wireName},
		{flag: &cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug (shows frames), info, warn or error"},
			env: "SOCKMUX_LOG_LEVEL", key: "log-level", option: true, check: logLevel},

		// Operations: watching a running link.
		{flag: &cli.StringFlag{Name: "name", Usage: "the link's `NAME` on this host: its control socket is named after it (sockmux status --name NAME); with --connect, the name this end gives a hub (letters, digits, - and _)", Category: "Operations"},
			env: "SOCKMUX_NAME", key: "name"},
		{flag: &cli.StringFlag{Name: "control", Usage: "serve the control socket at `PATH` (default: " + defaultControlHelp() + ")", Category: "Operations"},
			env: "SOCKMUX_CONTROL", key: "control"},
		{flag: &cli.StringFlag{Name: "metrics", Usage: "serve Prometheus metrics at http://`ADDR`/metrics (host:port)", Category: "Operations"},
			env: "SOCKMUX_METRICS", key: "metrics", check: hostPort},

		// The file itself.
		{flag: &cli.StringFlag{Name: "config", Usage: "read settings from the YAML `FILE` (keys are the long flag names; flags and SOCKMUX_* variables win over it); SIGHUP reads it again and applies changed forwards", Category: "Configuration"},
			env: "SOCKMUX_CONFIG"},
	}
}

// name is the setting's long flag name.
func (s *setting) name() string { return s.flag.Names()[0] }

// display is the flag as an error names it: its one-letter alias if it
// has one (-L), else its long name (--baud).
func (s *setting) display() string {
	for _, a := range s.flag.Names()[1:] {
		if len(a) == 1 {
			return "-" + a
		}
	}
	return "--" + s.name()
}

// spec is the setting's specValue when its values keep their order
// across flags (--port, --server, --dest): the environment gives one
// value whole (commas and all), and the command line replaces it.
func (s *setting) spec() *specValue {
	if g, ok := s.flag.(*cli.GenericFlag); ok {
		if v, ok := g.Value.(*specValue); ok {
			return v
		}
	}
	return nil
}

// linkFlags are the flags of sockmux link, each reading its variable.
func linkFlags(ss []setting) []cli.Flag {
	flags := make([]cli.Flag, len(ss))
	for i := range ss {
		s := &ss[i]
		if s.env != "" {
			if v := s.spec(); v != nil {
				v.env = s.env // read by specEnv; shown in help
			} else {
				setEnvVars(s.flag, []string{s.env})
			}
		}
		flags[i] = s.flag
	}
	return flags
}

// optionFlags tune the link and its forwards: sockmux delegate's flags,
// read from the command line only (but for --secret-file's variable).
func optionFlags() []cli.Flag {
	var flags []cli.Flag
	for _, s := range optionSettings() {
		if s.delegateEnv {
			setEnvVars(s.flag, []string{s.env})
		}
		flags = append(flags, s.flag)
	}
	return flags
}

// optionSettings are the entries of the options.
func optionSettings() []setting {
	var out []setting
	for _, s := range linkSettings(&forwardFlags{}) {
		if s.option {
			out = append(out, s)
		}
	}
	return out
}

// setEnvVars sets the variables urfave/cli reads f (one of its flag
// structs, all of which have EnvVars) from.
func setEnvVars(f cli.Flag, vars []string) {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return
	}
	if ev := v.Elem().FieldByName("EnvVars"); ev.IsValid() && ev.CanSet() && ev.Type() == reflect.TypeOf(vars) {
		ev.Set(reflect.ValueOf(vars))
	}
}

// values are the values s has in r, as text for its check.
func (s *setting) values(r flagReader) []string {
	name := s.name()
	if v := s.spec(); v != nil {
		return v.values()
	}
	switch s.flag.(type) {
	case *cli.StringSliceFlag:
		return r.StringSlice(name)
	case *cli.IntFlag:
		return []string{strconv.Itoa(r.Int(name))}
	case *cli.DurationFlag:
		return []string{r.Duration(name).String()}
	case *cli.BoolFlag:
		return []string{strconv.FormatBool(r.Bool(name))}
	}
	return []string{r.String(name)}
}

// envValues are the values s's variable gives, as urfave/cli reads them
// (a list's items split at commas and trimmed), in the text values gives
// for them; nil if the variable is unset or empty.
func (s *setting) envValues() []string {
	v, ok := os.LookupEnv(s.env)
	if !ok || v == "" {
		return nil
	}
	if s.spec() != nil {
		return []string{v}
	}
	switch s.flag.(type) {
	case *cli.StringSliceFlag:
		var out []string
		for item := range strings.SplitSeq(v, ",") {
			out = append(out, strings.TrimSpace(item))
		}
		return out
	case *cli.IntFlag:
		if n, err := strconv.ParseInt(v, 0, 64); err == nil {
			return []string{strconv.FormatInt(n, 10)}
		}
	case *cli.DurationFlag:
		if d, err := time.ParseDuration(v); err == nil {
			return []string{d.String()}
		}
	case *cli.BoolFlag:
		if b, err := strconv.ParseBool(v); err == nil {
			return []string{strconv.FormatBool(b)}
		}
	}
	return []string{v}
}

// reason is what a check finds wrong with a value, said without the value
// or where it came from: problem adds those.
type reason string

func (r reason) Error() string { return string(r) }

// valueError is a reason with the value it is about.
type valueError struct {
	value string // as the user would write it: a string quoted
	why   reason
}

func (e *valueError) Error() string { return e.value + ": " + string(e.why) }

// problem is what is wrong with v, one value of s, or nil: a *valueError
// ("0s: must be positive") or the error of the parser that checked it
// (which names the value).
func (s *setting) problem(v string) error {
	if s.check == nil {
		return nil
	}
	err := s.check(v)
	var r reason
	if errors.As(err, &r) {
		shown := v
		if kindOf(s.flag) == kindString || kindOf(s.flag) == kindList {
			shown = strconv.Quote(v)
		}
		return &valueError{shown, r}
	}
	return err
}

// origin is where a value came from, for its error.
type origin int

const (
	fromFlag origin = iota
	fromEnv
)

// checkGiven checks the values of each setting of ss that given says the
// command line or the environment set (the file's values were checked as
// it was read: parseConfig), in the order of the table, and names the
// flag or variable of the first bad one.
func checkGiven(ss []setting, r flagReader, given map[string]origin) error {
	for i := range ss {
		s := &ss[i]
		src, ok := given[s.name()]
		if !ok || s.check == nil {
			continue
		}
		for _, v := range s.values(r) {
			err := s.problem(v)
			if err == nil {
				continue
			}
			var ve *valueError
			switch {
			case src == fromEnv && errors.As(err, &ve):
				return fmt.Errorf("%s=%s: %s", s.env, v, ve.why)
			case src == fromEnv:
				return fmt.Errorf("%s: %w", s.env, err)
			case errors.As(err, &ve):
				return fmt.Errorf("%s %w", s.display(), err)
			}
			return fmt.Errorf("%s: %w", s.display(), err)
		}
	}
	return nil
}

// givenByFlagOrEnv tells, for each setting c has a value of from the
// command line or the environment (before the file is applied), which of
// the two gave it: the environment when its variable gives the value c
// has.
func givenByFlagOrEnv(c *cli.Context, ss []setting) map[string]origin {
	given := map[string]origin{}
	for i := range ss {
		s := &ss[i]
		name := s.name()
		if !c.IsSet(name) {
			continue
		}
		given[name] = fromFlag
		if env := s.envValues(); env != nil && slices.Equal(env, s.values(c)) {
			given[name] = fromEnv
		}
	}
	return given
}

// namedByFlags puts before err, if it is a layer's *ConfigError (from
// endpoint.New), the flags of the fields it names.
func namedByFlags(err error) error {
	var fields []string
	var le *link.ConfigError
	var me *mux.ConfigError
	switch {
	case errors.As(err, &le):
		for _, f := range le.Fields {
			fields = append(fields, "link."+f)
		}
	case errors.As(err, &me):
		for _, f := range me.Fields {
			fields = append(fields, "mux."+f)
		}
	}
	var flags []string
	ss := linkSettings(&forwardFlags{})
	for _, f := range fields {
		for i := range ss {
			if ss[i].field == f {
				flags = append(flags, ss[i].display())
			}
		}
	}
	if len(flags) == 0 {
		return err
	}
	return fmt.Errorf("%s: %w", strings.Join(flags, " and "), err)
}

// The checks.

// commSpec checks one --comm: a path, or NAME=PATH with a valid peer
// name (commPort).
func commSpec(v string) error {
	if v == "" {
		return reason("want a path")
	}
	if name, _, named := cutCommName(v); named {
		if err := link.CheckName(name); err != nil {
			return reason(fmt.Sprintf("NAME=PATH: %v", err))
		}
	}
	return nil
}

// globPattern checks --comm-glob ("" is none).
func globPattern(v string) error {
	if _, err := filepath.Match(v, ""); err != nil {
		return reason("not a glob pattern such as '/dev/serial/by-id/*': " + err.Error())
	}
	return nil
}

// hostPort checks an address to listen on or dial ("" is none).
func hostPort(v string) error {
	if v == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return reason("want HOST:PORT")
	}
	return nil
}

// baudValue checks --baud: auto, or a positive number of bits per
// second.
func baudValue(v string) error {
	if _, _, err := parseBaud(v); err != nil {
		return reason("want a number of bits per second such as 115200, or auto")
	}
	return nil
}

// parseBaud reads --baud: auto, or a positive number.
func parseBaud(v string) (baud int, auto bool, err error) {
	if strings.EqualFold(strings.TrimSpace(v), "auto") {
		return 0, true, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0, false, fmt.Errorf("--baud %q: want a number of bits per second such as 115200, or auto", v)
	}
	return n, false, nil
}

func notNegativeInt(v string) error {
	if n, err := strconv.Atoi(v); err != nil || n < 0 {
		return reason("must not be negative")
	}
	return nil
}

func positive(v string) error {
	if n, err := strconv.Atoi(v); err != nil || n <= 0 {
		return reason("must be positive")
	}
	return nil
}

// between checks a whole number in lo...hi.
func between(lo, hi int) func(string) error {
	return func(v string) error {
		if n, err := strconv.Atoi(v); err != nil || n < lo || n > hi {
			return reason(fmt.Sprintf("must be between %d and %d", lo, hi))
		}
		return nil
	}
}

func rs485Delay(v string) error {
	if d, err := time.ParseDuration(v); err != nil || d < 0 || d > 100*time.Millisecond {
		return reason("must be between 0 and 100ms")
	}
	return nil
}

func notNegative(v string) error {
	if d, err := time.ParseDuration(v); err != nil || d < 0 {
		return reason("must not be negative")
	}
	return nil
}

func positiveDuration(v string) error {
	if d, err := time.ParseDuration(v); err != nil || d <= 0 {
		return reason("must be positive")
	}
	return nil
}

// serialMode checks one field of the serial line mode as the serial port
// will (serialport.Mode.Validate), set by set.
func serialMode(want string, set func(m *serialport.Mode, v string)) func(string) error {
	return func(v string) error {
		m := serialport.DefaultMode()
		set(&m, v)
		if m.Validate() != nil {
			return reason(want)
		}
		return nil
	}
}

// lineLevel checks --dtr and --rts as the serial port reads them.
func lineLevel(v string) error {
	if _, err := serialport.ParseLevel("", v); err != nil {
		return reason("want one of on, off")
	}
	return nil
}

func carrierLine(v string) error {
	if _, err := serialport.ParseCarrier(v); err != nil {
		return reason("want one of none, dcd, dsr, cts")
	}
	return nil
}

func compression(v string) error {
	if _, err := link.ParseCompression(v); err != nil {
		return reason("want one of auto, off, fast, best")
	}
	return nil
}

func fecMode(v string) error {
	if _, err := link.ParseFEC(v); err != nil {
		return reason("want auto or off")
	}
	return nil
}

func fecBlock(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n != 0 && (n < fec.MinBlock || n > fec.DefaultBlock) {
		return reason(fmt.Sprintf("want %d to %d bytes", fec.MinBlock, fec.DefaultBlock))
	}
	return nil
}

func logLevel(v string) error {
	var l slog.Level
	if l.UnmarshalText([]byte(strings.ToUpper(v))) != nil {
		return reason("want one of debug, info, warn, error")
	}
	return nil
}

// forwardSpec checks a -L, -R or -D value.
func forwardSpec(kind forward.Kind) func(string) error {
	return func(v string) error {
		_, err := forward.ParseForward(kind, v)
		return err
	}
}

// parsed checks a value with its parser.
func parsed[T any](parse func(string) (T, error)) func(string) error {
	return func(v string) error {
		_, err := parse(v)
		return err
	}
}

func allowDest(v string) error {
	_, err := forward.ParseAllow([]string{v})
	return err
}
