package forward

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/sockmux/sockmux/link"
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
	// Peer is the hub's peer the forward is addressed to (-L
	// ...@PEER, -R ...@PEER on a hub, see package hub); empty for a
	// forward over the one link of a plain end.
	Peer string
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
	if f.Peer != "" {
		s += " @" + f.Peer
	}
	return s
}

// DefaultBind is the address listeners bind when a spec names none: only
// this host can use a forward unless asked otherwise.
const DefaultBind = "127.0.0.1"

// ParseForward parses an ssh-style spec: [BIND:]PORT:HOST:HOSTPORT for
// Local and Remote, [BIND:]PORT for Dynamic. A "/udp" suffix asks for UDP.
// IPv6 addresses go in brackets: [::1]:8080:[2001:db8::1]:80. On a hub, a
// Local or Remote spec may end in @PEER (before or after /udp): the
// forward goes over that peer's link (Forward.Peer).
func ParseForward(kind Kind, spec string) (Forward, error) {
	f := Forward{Kind: kind, Network: "tcp"}
	body := spec
	if i := strings.LastIndexByte(body, '@'); i >= 0 {
		peer, suffix := body[i+1:], ""
		if p, ok := strings.CutSuffix(peer, "/udp"); ok {
			peer, suffix = p, "/udp"
		} else if p, ok := strings.CutSuffix(peer, "/tcp"); ok {
			peer = p
		}
		if kind == Dynamic || kind == Entrance {
			return f, fmt.Errorf("forward %q: only -L and -R are addressed to a peer (@PEER); a hub's -D reaches HOST.PEER.sockmux", spec)
		}
		if err := link.CheckName(peer); err != nil {
			return f, fmt.Errorf("forward %q: after @: %v", spec, err)
		}
		f.Peer = peer
		body = body[:i] + suffix
	}
	if b, ok := strings.CutSuffix(body, "/udp"); ok {
		body, f.Network = b, "udp"
	} else if b, ok := strings.CutSuffix(body, "/tcp"); ok {
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

// maxEntrances bounds the ports one --port spec may open, ranges
// included: each is a listener.
const maxEntrances = 1024

// ParseEntrances parses a --port spec (DeleGate's PORT=): a list of
// items separated by commas, each [HOST:]PORT[/udp] where PORT may be a
// range LO-HI:
//
//	9023,9080  127.0.0.1:9011,127.0.0.1:9012  9011,[::1]:9013/udp  *:9000-9010
//
// Each port becomes an Entrance forward: connections to it cross the
// link with no destination, and the far end's rules route them. "/udp"
// applies to the item it ends. HOST is a name, an address (IPv6 in
// brackets) or "*" for every address; an item without one takes the
// HOST of the item before it, and the first defaults to DefaultBind. An
// error names the item at fault.
func ParseEntrances(spec string) ([]Forward, error) {
	items := strings.Split(spec, ",")
	bind := DefaultBind
	var out []Forward
	seen := make(map[string]bool)
	for _, item := range items {
		item = strings.TrimSpace(item)
		fail := func(format string, args ...any) error {
			msg := fmt.Sprintf(format, args...)
			if len(items) > 1 {
				return fmt.Errorf("port %q: item %q: %s", spec, item, msg)
			}
			return fmt.Errorf("port %q: %s", spec, msg)
		}
		if item == "" {
			if len(items) == 1 {
				return nil, fail("no port (want [HOST:]PORT[/udp][,...])")
			}
			return nil, fmt.Errorf("port %q: an empty item between commas", spec)
		}
		e, err := parseEntranceItem(item)
		if err != nil {
			return nil, fail("%v", err)
		}
		if e.hasHost {
			bind = e.host
		}
		n := e.ports.Hi - e.ports.Lo + 1
		if n > maxEntrances {
			return nil, fail("%s is %d ports; one --port opens at most %d (give several --port flags for more)", e.ports, n, maxEntrances)
		}
		if len(out)+n > maxEntrances {
			return nil, fail("the list reaches %d ports; one --port opens at most %d (give several --port flags for more)", len(out)+n, maxEntrances)
		}
		for p := e.ports.Lo; p <= e.ports.Hi; p++ {
			f := Forward{Kind: Entrance, Network: e.network, Bind: net.JoinHostPort(bind, strconv.Itoa(p))}
			key := f.Network + " " + f.Bind
			if seen[key] {
				return nil, fail("%s is in the list twice", strings.TrimPrefix(f.String(), "--port "))
			}
			seen[key] = true
			out = append(out, f)
		}
	}
	return out, nil
}

// entranceItem is one item of a --port list.
type entranceItem struct {
	hasHost bool
	host    string // "" for every address ("*")
	ports   PortRange
	network string
}

// parseEntranceItem parses [HOST:]PORT[/udp] with PORT a port or a range.
func parseEntranceItem(item string) (entranceItem, error) {
	e := entranceItem{network: "tcp"}
	if b, ok := strings.CutSuffix(item, "/udp"); ok {
		item, e.network = b, "udp"
	} else if b, ok := strings.CutSuffix(item, "/tcp"); ok {
		item = b
	}
	ports := item
	switch {
	case strings.HasPrefix(item, "["):
		end := strings.Index(item, "]")
		if end < 0 {
			return e, fmt.Errorf("'[' without ']'")
		}
		rest, ok := strings.CutPrefix(item[end+1:], ":")
		if !ok {
			return e, fmt.Errorf("want [IPv6]:PORT, e.g. [::1]:8080")
		}
		e.hasHost, e.host, ports = true, item[1:end], rest
		if e.host == "" {
			return e, fmt.Errorf("empty address in '[]' (use * for every address)")
		}
	case strings.ContainsAny(item, "[]"):
		return e, fmt.Errorf("'[' and ']' go around an IPv6 address, as in [::1]:8080")
	case strings.Count(item, ":") > 1:
		return e, fmt.Errorf("put an IPv6 address in brackets, [::1]:8080")
	case strings.Contains(item, ":"):
		e.host, ports, _ = strings.Cut(item, ":")
		e.hasHost = true
		if e.host == "" {
			return e, fmt.Errorf("empty address before ':' (use * for every address)")
		}
	}
	if e.host == "*" {
		e.host = ""
	}
	pr, err := parsePortRange(ports)
	if err != nil {
		return e, err
	}
	e.ports = pr
	return e, nil
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
