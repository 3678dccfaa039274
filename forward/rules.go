package forward

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/sockmux/sockmux/mux"
)

// ProxyKind names a built-in proxy that a stream can be handed to: the
// proxy asks the client where it wants to go.
type ProxyKind string

// The built-in proxies.
const (
	// ProxySOCKS serves SOCKS5, SOCKS4, SOCKS4a and HTTP proxy requests
	// (CONNECT and absolute URIs) on one port, told apart by the first
	// byte the client sends.
	ProxySOCKS ProxyKind = "socks"
	// ProxyTelnet prompts the client for "host [port]", as DeleGate's
	// proxy-Telnet does.
	ProxyTelnet ProxyKind = "telnet"
)

// Rule is one exit rule: which streams from the far end it applies to and
// where they go. --server and --dest give rules, as DeleGate's
// SERVER=...,-in and DEST= do. The first rule that matches a stream wins.
type Rule struct {
	// Text is the rule as given.
	Text string
	// Network is the kind of stream the rule applies to: "tcp" or "udp".
	Network string
	// Proxy, when set, hands the stream to a built-in proxy; Host and
	// Port are then unused.
	Proxy ProxyKind
	// Host is the destination host.
	Host string
	// Port is the destination port or, when Relative, an offset added to
	// the port the connection entered on at the far end (DeleGate's
	// "host:-" and "host:+N").
	Port     int
	Relative bool
	// Entrances limits the rule to connections that entered on one of
	// these ports at the far end (":-:-PNNNN"); empty means any.
	Entrances []PortRange
	// Clients limits the rule to connections from these client hosts
	// (":-:HOSTLIST"); empty means any.
	Clients HostList
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi int }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// defaultPorts are the ports of the schemes a rule may name.
var defaultPorts = map[string]int{
	"telnet": 23, "http": 80, "https": 443, "ftp": 21, "ssh": 22, "smtp": 25,
	"whois": 43, "gopher": 70, "pop": 110, "pop3": 110, "nntp": 119, "imap": 143,
	"socks": 1080,
}

// proxyNames are the protocols that, named alone, ask for a built-in proxy.
var proxyNames = map[string]ProxyKind{
	"socks": ProxySOCKS, "socks4": ProxySOCKS, "socks5": ProxySOCKS,
	"http": ProxySOCKS, "proxy": ProxySOCKS, "telnet": ProxyTelnet,
}

// ParseRule parses an exit rule:
//
//	DEST[:-:CONDITION[,CONDITION...]]
//
// DEST is tcp://HOST:PORT, udp://HOST:PORT, PROTO://HOST[:PORT] for a
// known protocol (telnet, http, ssh...; its port is the default), a bare
// HOST:PORT, HOST:PORT/udp, or a protocol alone - socks, http or telnet -
// for a built-in proxy. DeleGate's tcprelay:// and udprelay:// are
// accepted, and a PORT of "-" or "+N"/"-N" maps the port the connection
// entered on at the far end (as is, or shifted). A CONDITION is -PPORT (or
// -PLO-HI) for the entrance port at the far end, or a client host: a
// name, an address, a CIDR, a DeleGate address/mask, a wildcard such as
// 192.168.* or *.example.org, or one of these after "!" to exclude it.
// DeleGate's ",-in" postfix may follow DEST or the conditions.
func ParseRule(text string) (Rule, error) {
	r, err := parseRule(text)
	if err != nil {
		return r, fmt.Errorf("rule %q: %w", text, err)
	}
	return r, nil
}

// ParseDest parses a DEST: HOST:PORT[/udp], the destination of every
// stream no earlier rule takes (DeleGate's DEST=, short for
// SERVER=tcprelay://HOST:PORT,-in). Conditions may follow as in ParseRule.
func ParseDest(text string) (Rule, error) {
	head, _, _ := strings.Cut(text, ":-:")
	if strings.Contains(head, "://") {
		return Rule{}, fmt.Errorf("dest %q: want HOST:PORT[/udp], without a scheme", text)
	}
	if _, ok := proxyNames[strings.ToLower(strings.TrimSuffix(head, ",-in"))]; ok {
		return Rule{}, fmt.Errorf("dest %q: want HOST:PORT[/udp]; a built-in proxy is a --server rule", text)
	}
	r, err := parseRule(text)
	if err != nil {
		return r, fmt.Errorf("dest %q: %w", text, err)
	}
	return r, nil
}

func parseRule(text string) (Rule, error) {
	r := Rule{Text: text, Network: "tcp"}
	if strings.TrimSpace(text) == "" {
		return r, fmt.Errorf("empty")
	}
	head, conds, hasConds := strings.Cut(text, ":-:")
	head, err := cutIn(head)
	if err != nil {
		return r, err
	}
	if hasConds {
		conds, err = cutIn(conds)
		if err != nil {
			return r, err
		}
		if err := r.parseConditions(conds); err != nil {
			return r, err
		}
	}
	if strings.Contains(head, ",") {
		return r, fmt.Errorf("unexpected %q (conditions follow \":-:\")", head[strings.Index(head, ","):])
	}
	if err := r.parseDest(head); err != nil {
		return r, err
	}
	if r.Proxy != "" && r.Network == "udp" {
		return r, fmt.Errorf("a built-in proxy serves TCP only")
	}
	return r, nil
}

// cutIn removes DeleGate's ",-in" postfix; "-in(options)" asked DeleGate to
// run a second DeleGate with those options, which sockmux cannot do.
func cutIn(s string) (string, error) {
	i := strings.Index(s, ",-in")
	if i < 0 {
		return s, nil
	}
	rest := s[i+len(",-in"):]
	if strings.HasPrefix(rest, "(") {
		return "", fmt.Errorf("%q: sockmux cannot run a DeleGate with options; drop the (...) part", s[i+1:])
	}
	if rest != "" {
		return "", fmt.Errorf("unexpected %q after \",-in\"", rest)
	}
	return s[:i], nil
}

func (r *Rule) parseDest(head string) error {
	if b, ok := strings.CutSuffix(head, "/udp"); ok {
		head, r.Network = b, "udp"
	} else if b, ok := strings.CutSuffix(head, "/tcp"); ok {
		head = b
	}
	scheme, rest, hasScheme := strings.Cut(head, "://")
	scheme = strings.ToLower(scheme)
	if !hasScheme {
		if kind, ok := proxyNames[strings.ToLower(head)]; ok {
			r.Proxy = kind
			return nil
		}
		if !strings.Contains(head, ":") {
			return fmt.Errorf("want PROTO://HOST[:PORT], HOST:PORT, or socks, http or telnet for a built-in proxy (there is no built-in %q proxy)", head)
		}
		rest, scheme = head, ""
	}
	defPort := 0
	switch scheme {
	case "", "tcp", "tcprelay":
	case "udp", "udprelay":
		r.Network = "udp"
	default:
		p, ok := defaultPorts[scheme]
		if !ok {
			return fmt.Errorf("unknown protocol %q: use tcp://HOST:PORT", scheme)
		}
		defPort = p
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.Contains(rest, "/") {
		return fmt.Errorf("a path (%q) cannot be relayed: give HOST[:PORT]", rest[strings.Index(rest, "/"):])
	}
	host, port, err := splitHostMaybePort(rest)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("no host in %q", head)
	}
	r.Host = host
	switch {
	case port == "" && defPort == 0:
		return fmt.Errorf("%q needs a port", head)
	case port == "":
		r.Port = defPort
	case port == "-":
		r.Relative = true
	case port[0] == '+' || port[0] == '-':
		n, err := strconv.Atoi(port[1:])
		if err != nil || n > 65535 {
			return fmt.Errorf("port offset %q: want -, +N or -N", port)
		}
		if port[0] == '-' {
			n = -n
		}
		r.Port, r.Relative = n, true
	default:
		p, err := ParsePort(port, false)
		if err != nil {
			return err
		}
		r.Port = p
	}
	return nil
}

// splitHostMaybePort splits "host", "host:port", "[v6]" or "[v6]:port".
func splitHostMaybePort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", "", fmt.Errorf("'[' without ']' in %q", s)
		}
		host, rest := s[1:end], s[end+1:]
		switch {
		case rest == "":
			return host, "", nil
		case rest[0] == ':':
			return host, rest[1:], nil
		}
		return "", "", fmt.Errorf("unexpected %q after ']'", rest)
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, "", nil
	case 1:
		host, port, _ = strings.Cut(s, ":")
		return host, port, nil
	}
	return "", "", fmt.Errorf("%q: put an IPv6 address in brackets, [::1]:80", s)
}

// parseConditions parses the part after ":-:": entrance ports (-P...) and
// client hosts, separated by commas, optionally in braces; ":-:" may
// separate further conditions.
func (r *Rule) parseConditions(s string) error {
	var hosts []string
	for part := range strings.SplitSeq(s, ":-:") {
		part = strings.TrimSpace(part)
		if strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}") {
			part = part[1 : len(part)-1]
		}
		if part == "" {
			return fmt.Errorf("empty condition after \":-:\"")
		}
		for item := range strings.SplitSeq(part, ",") {
			item = strings.TrimSpace(item)
			switch {
			case item == "":
				return fmt.Errorf("empty item in condition %q", part)
			case strings.HasPrefix(item, "-P"):
				if i := strings.LastIndex(item, ":"); i >= 0 {
					return fmt.Errorf("entrance port %q: give the port alone, -P%s (a rule sees only the port a connection entered on at the far end)", item, item[i+1:])
				}
				pr, err := parsePortRange(item[2:])
				if err != nil {
					return fmt.Errorf("entrance port %q: %v", item, err)
				}
				r.Entrances = append(r.Entrances, pr)
			case isPortText(item):
				return fmt.Errorf("condition %q is a port, not a client host: each entrance port needs its -P (-P9011,-P9012, or a range -P9011-9012)", item)
			default:
				hosts = append(hosts, item)
			}
		}
	}
	if len(hosts) > 0 {
		hl, err := ParseHostList(strings.Join(hosts, ","))
		if err != nil {
			return err
		}
		r.Clients = hl
	}
	return nil
}

// isPortText reports whether s is digits, or digits-digits: a port or a
// range, which no client host name or address is.
func isPortText(s string) bool {
	lo, hi, isRange := strings.Cut(s, "-")
	digits := func(t string) bool {
		return t != "" && strings.Trim(t, "0123456789") == ""
	}
	return digits(lo) && (!isRange || digits(hi))
}

// parsePortRange parses PORT or LO-HI.
func parsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := ParsePort(lo, false)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{a, a}, nil
	}
	b, err := ParsePort(hi, false)
	if err != nil {
		return PortRange{}, err
	}
	if b < a {
		return PortRange{}, fmt.Errorf("range %d-%d is backwards", a, b)
	}
	return PortRange{a, b}, nil
}

// String describes the rule for logs and for the equivalent command line.
func (r Rule) String() string {
	var b strings.Builder
	switch {
	case r.Proxy != "":
		b.WriteString(string(r.Proxy))
	default:
		b.WriteString(r.Network)
		b.WriteString("://")
		b.WriteString(bracket(r.Host))
		b.WriteByte(':')
		switch {
		case r.Relative && r.Port == 0:
			b.WriteByte('-')
		case r.Relative:
			fmt.Fprintf(&b, "%+d", r.Port)
		default:
			b.WriteString(strconv.Itoa(r.Port))
		}
	}
	var conds []string
	for _, e := range r.Entrances {
		conds = append(conds, "-P"+e.String())
	}
	if !r.Clients.Empty() {
		conds = append(conds, r.Clients.String())
	}
	if len(conds) > 0 {
		b.WriteString(":-:")
		b.WriteString(strings.Join(conds, ","))
	}
	return b.String()
}

func bracket(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// Matches reports whether the rule applies to a stream with info. Matching
// client host names may look names up, within ctx.
func (r Rule) Matches(ctx context.Context, info mux.Info) bool {
	network := info.Network
	if network == "" {
		network = "tcp"
	}
	if network != r.Network {
		return false
	}
	if len(r.Entrances) > 0 {
		in := false
		for _, e := range r.Entrances {
			if info.Entrance >= e.Lo && info.Entrance <= e.Hi {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if !r.Clients.Empty() {
		host, _, err := net.SplitHostPort(info.Client)
		if err != nil {
			host = info.Client
		}
		if !r.Clients.Match(ctx, host) {
			return false
		}
	}
	return true
}

// Target is where the rule sends a stream with info.
func (r Rule) Target(info mux.Info) (Target, error) {
	if r.Proxy != "" {
		return Target{Proxy: r.Proxy, Rule: r.Text}, nil
	}
	port := r.Port
	if r.Relative {
		port += info.Entrance
		if info.Entrance == 0 || port < 1 || port > 65535 {
			return Target{}, fmt.Errorf("rule %q maps entrance port %d to %d, which is not a port", r.Text, info.Entrance, port)
		}
	}
	return Target{Dest: net.JoinHostPort(r.Host, strconv.Itoa(port)), Rule: r.Text}, nil
}
