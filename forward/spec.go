// Package forward carries TCP connections over a mux: it listens on local
// ports and opens a stream for each connection (ssh's -L, -D and
// DeleGate's PORT=), listens on behalf of the far end (-R), and decides
// where each stream that arrives from the far end goes.
package forward

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Kind is the kind of a forward.
type Kind int

// The kinds of forwards.
const (
	Local    Kind = iota // -L: listen here, the far end connects to Dest
	Remote               // -R: the far end listens, we connect to Dest
	Dynamic              // -D: listen here, a SOCKS/HTTP proxy asks each client where to go
	Entrance             // --port: listen here, the far end's rules decide where each connection goes
)

func (k Kind) String() string {
	switch k {
	case Local:
		return "local"
	case Remote:
		return "remote"
	case Entrance:
		return "entrance"
	}
	return "dynamic"
}

// Forward is one forwarding rule given on the command line.
type Forward struct {
	Kind    Kind
	Network string // "tcp" or "udp"
	Bind    string // host:port to listen on (here for Local/Dynamic/Entrance, at the far end for Remote)
	Dest    string // host:port to connect to (empty for Dynamic and Entrance)
}

func (f Forward) String() string {
	flag := map[Kind]string{Local: "-L", Remote: "-R", Dynamic: "-D", Entrance: "--port"}[f.Kind]
	s := flag + " " + f.Bind
	if f.Dest != "" {
		s += " -> " + f.Dest
	}
	if f.Network == "udp" {
		s += "/udp"
	}
	return s
}

// DefaultBind is the address listeners bind when a spec names none: only
// this host can use a forward unless asked otherwise.
const DefaultBind = "127.0.0.1"

// ParseForward parses an ssh-style spec: [BIND:]PORT:HOST:HOSTPORT for
// Local and Remote, [BIND:]PORT for Dynamic. A "/udp" suffix asks for UDP.
// IPv6 addresses go in brackets: [::1]:8080:[2001:db8::1]:80.
func ParseForward(kind Kind, spec string) (Forward, error) {
	f := Forward{Kind: kind, Network: "tcp"}
	body := spec
	if b, ok := strings.CutSuffix(spec, "/udp"); ok {
		body, f.Network = b, "udp"
	} else if b, ok := strings.CutSuffix(spec, "/tcp"); ok {
		body = b
	}
	parts, err := splitColons(body)
	if err != nil {
		return f, fmt.Errorf("forward %q: %v", spec, err)
	}
	want := "[BIND:]PORT:HOST:HOSTPORT"
	if kind == Dynamic {
		want = "[BIND:]PORT"
	}
	var bind, port, host, hostport string
	switch {
	case kind == Dynamic && len(parts) == 1:
		port = parts[0]
	case kind == Dynamic && len(parts) == 2:
		bind, port = parts[0], parts[1]
	case kind != Dynamic && len(parts) == 3:
		port, host, hostport = parts[0], parts[1], parts[2]
	case kind != Dynamic && len(parts) == 4:
		bind, port, host, hostport = parts[0], parts[1], parts[2], parts[3]
	default:
		return f, fmt.Errorf("forward %q: want %s", spec, want)
	}
	if bind == "" {
		bind = DefaultBind
	}
	if bind == "*" {
		bind = ""
	}
	if _, err := ParsePort(port, kind == Remote); err != nil {
		return f, fmt.Errorf("forward %q: listen port: %v", spec, err)
	}
	f.Bind = net.JoinHostPort(bind, port)
	if kind != Dynamic {
		if host == "" {
			return f, fmt.Errorf("forward %q: destination host is empty", spec)
		}
		if _, err := ParsePort(hostport, false); err != nil {
			return f, fmt.Errorf("forward %q: destination port: %v", spec, err)
		}
		f.Dest = net.JoinHostPort(host, hostport)
	}
	if kind == Dynamic && f.Network == "udp" {
		return f, fmt.Errorf("forward %q: a dynamic (SOCKS/HTTP) forward is TCP only", spec)
	}
	return f, nil
}

// maxEntrances bounds the ports one --port spec may open.
const maxEntrances = 1024

// ParseEntrances parses a --port spec (DeleGate's PORT=):
// [BIND:]PORT[/udp][,PORT[/udp]...], where a PORT may be a range LO-HI.
// Each port becomes an Entrance forward: connections to it cross the
// link with no destination, and the far end's rules route them. A "/udp"
// suffix applies to the port it follows. BIND defaults to DefaultBind;
// "*" means every address.
func ParseEntrances(spec string) ([]Forward, error) {
	bind, list := DefaultBind, spec
	if i := strings.LastIndex(spec, ":"); i >= 0 {
		b := spec[:i]
		if strings.HasPrefix(b, "[") && strings.HasSuffix(b, "]") {
			b = b[1 : len(b)-1]
		} else if strings.ContainsAny(b, "[]") || strings.Contains(b, ":") {
			return nil, fmt.Errorf("port %q: put an IPv6 address in brackets, [::1]:8080", spec)
		}
		bind, list = b, spec[i+1:]
	}
	switch bind {
	case "":
		return nil, fmt.Errorf("port %q: empty address before ':' (use * for every address)", spec)
	case "*":
		bind = ""
	}
	var out []Forward
	for item := range strings.SplitSeq(list, ",") {
		network := "tcp"
		if b, ok := strings.CutSuffix(item, "/udp"); ok {
			item, network = b, "udp"
		} else if b, ok := strings.CutSuffix(item, "/tcp"); ok {
			item = b
		}
		pr, err := parsePortRange(item)
		if err != nil {
			return nil, fmt.Errorf("port %q: %v", spec, err)
		}
		if len(out)+pr.Hi-pr.Lo+1 > maxEntrances {
			return nil, fmt.Errorf("port %q: more than %d ports", spec, maxEntrances)
		}
		for p := pr.Lo; p <= pr.Hi; p++ {
			out = append(out, Forward{Kind: Entrance, Network: network, Bind: net.JoinHostPort(bind, strconv.Itoa(p))})
		}
	}
	return out, nil
}

// ParsePort parses a port number; zero is allowed only when zeroOK (a
// remote listener may let the far end pick).
func ParsePort(s string, zeroOK bool) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 || p > 65535 || (p == 0 && !zeroOK) {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return p, nil
}

// splitColons splits s at colons outside square brackets and strips the
// brackets.
func splitColons(s string) ([]string, error) {
	var parts []string
	var cur strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '[':
			if depth > 0 {
				return nil, fmt.Errorf("nested '['")
			}
			depth++
		case r == ']':
			if depth == 0 {
				return nil, fmt.Errorf("']' without '['")
			}
			depth--
		case r == ':' && depth == 0:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("'[' without ']'")
	}
	return append(parts, cur.String()), nil
}
