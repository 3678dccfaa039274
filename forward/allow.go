package forward

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Policy restricts where streams from the far end may connect (--allow).
// An empty Policy allows everything.
type Policy struct {
	rules []allowRule
}

type allowRule struct {
	host   string       // a host name ("db.internal"), or "*.example.org"; empty with a prefix
	prefix netip.Prefix // an address or network
	lo, hi int          // port range; 0, 65535 when no port is given
	text   string
}

// ParseAllow parses --allow rules: HOST|CIDR[:PORT[-PORT]], e.g.
// "10.0.0.0/8", "db.internal:5432", "[2001:db8::/32]:80-443",
// "*.example.org:443".
func ParseAllow(specs []string) (*Policy, error) {
	p := &Policy{}
	for _, spec := range specs {
		r, err := parseAllowRule(spec)
		if err != nil {
			return nil, fmt.Errorf("--allow %q: %v", spec, err)
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

func parseAllowRule(spec string) (allowRule, error) {
	r := allowRule{lo: 0, hi: 65535, text: spec}
	target, ports := spec, ""
	if strings.HasPrefix(spec, "[") {
		end := strings.Index(spec, "]")
		if end < 0 {
			return r, fmt.Errorf("'[' without ']'")
		}
		target = spec[1:end]
		rest := spec[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return r, fmt.Errorf("unexpected %q after ']'", rest)
			}
			ports = rest[1:]
		}
	} else if i := strings.LastIndex(spec, ":"); i >= 0 && strings.Count(spec, ":") == 1 {
		target, ports = spec[:i], spec[i+1:]
	}
	if target == "" {
		return r, fmt.Errorf("no host or network")
	}
	if ports != "" {
		lo, hi, ok := strings.Cut(ports, "-")
		var err error
		if r.lo, err = ParsePort(lo, false); err != nil {
			return r, err
		}
		r.hi = r.lo
		if ok {
			if r.hi, err = ParsePort(hi, false); err != nil {
				return r, err
			}
		}
		if r.hi < r.lo {
			return r, fmt.Errorf("port range %s is backwards", ports)
		}
	}
	if pfx, err := netip.ParsePrefix(target); err == nil {
		r.prefix = pfx.Masked()
		return r, nil
	}
	if addr, err := netip.ParseAddr(target); err == nil {
		r.prefix = netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen())
		return r, nil
	}
	if strings.ContainsAny(target, "/ ") {
		return r, fmt.Errorf("%q is neither a host name nor an address or network", target)
	}
	r.host = strings.ToLower(strings.TrimSuffix(target, "."))
	return r, nil
}

// Empty reports whether the policy allows everything.
func (p *Policy) Empty() bool { return p == nil || len(p.rules) == 0 }

// DeniedError is a destination the policy does not allow.
type DeniedError struct{ Dest string }

func (e *DeniedError) Error() string {
	return "destination " + e.Dest + " is not allowed here (--allow)"
}

// Resolve checks dest against the policy and returns the address to dial:
// host names are resolved here and the address checked is the one dialled,
// so a name cannot be turned into a forbidden address between check and
// use.
func (p *Policy) Resolve(ctx context.Context, dest string) (string, error) {
	host, portText, err := net.SplitHostPort(dest)
	if err != nil {
		return "", err
	}
	if p.Empty() {
		return dest, nil
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return "", fmt.Errorf("bad port in %s", dest)
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a.Unmap()}
	} else {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return "", err
		}
		for _, a := range ips {
			addrs = append(addrs, a.Unmap())
		}
	}
	for _, a := range addrs {
		for _, r := range p.rules {
			if port < r.lo || port > r.hi {
				continue
			}
			if r.host != "" && matchHost(r.host, name) || r.prefix.IsValid() && r.prefix.Contains(a) {
				return net.JoinHostPort(a.String(), portText), nil
			}
		}
	}
	return "", &DeniedError{Dest: dest}
}

// matchHost matches a name against "host" or "*.domain".
func matchHost(pattern, name string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(name, "."+suffix)
	}
	return pattern == name
}
