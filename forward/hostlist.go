package forward

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HostList is a list of client hosts, as in DeleGate's HostList: names,
// addresses, CIDRs (10.0.0.0/8), address/mask (192.168.0.0/255.255.0.0),
// wildcards over addresses (192.168.*) or names (*.example.org, or
// .example.org), "*" for any host, and any of these after "!" to exclude
// hosts. A host matches when it matches an item and no excluded item; a
// list of exclusions alone matches every other host.
type HostList struct {
	items []hostItem
	cache *nameCache
}

type hostItem struct {
	text    string
	neg     bool
	any     bool
	prefix  netip.Prefix // an address or a CIDR
	pattern string       // a wildcard over addresses or names, lower case
	byName  bool         // the pattern is over names: the client's address is looked up
	name    string       // a host name, looked up
}

// ParseHostList parses a comma-separated host list.
func ParseHostList(s string) (HostList, error) {
	hl := HostList{cache: &nameCache{entries: make(map[string]cacheEntry)}}
	for text := range strings.SplitSeq(s, ",") {
		text = strings.TrimSpace(text)
		it := hostItem{text: text}
		body := text
		if b, ok := strings.CutPrefix(body, "!"); ok {
			it.neg, body = true, b
		}
		if err := it.parse(body); err != nil {
			return HostList{}, fmt.Errorf("host %q: %v", text, err)
		}
		hl.items = append(hl.items, it)
	}
	return hl, nil
}

func (it *hostItem) parse(s string) error {
	s = strings.ToLower(s)
	if b, ok := strings.CutPrefix(s, "["); ok {
		addr, rest, closed := strings.Cut(b, "]")
		if !closed || (rest != "" && rest[0] != '/') {
			return fmt.Errorf("'[' without ']'")
		}
		s = addr + rest
	}
	switch {
	case s == "":
		return fmt.Errorf("empty")
	case s == "*":
		it.any = true
		return nil
	case strings.ContainsAny(s, "*?["):
		if _, err := path.Match(s, ""); err != nil {
			return fmt.Errorf("bad wildcard")
		}
		it.pattern = s
		it.byName = strings.Trim(s, "0123456789.*?[]-") != "" && !strings.Contains(s, ":")
		return nil
	case strings.HasPrefix(s, "."):
		it.pattern, it.byName = "*"+s, true
		return nil
	}
	if addr, mask, ok := strings.Cut(s, "/"); ok {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return fmt.Errorf("%q is not an address", addr)
		}
		bits := -1
		if m, err := netip.ParseAddr(mask); err == nil && m.Is4() && a.Is4() {
			ones, size := net.IPMask(m.AsSlice()).Size()
			if size == 0 {
				return fmt.Errorf("mask %q is not a contiguous netmask", mask)
			}
			bits = ones
		} else if n, err := strconv.Atoi(mask); err == nil {
			bits = n
		} else {
			return fmt.Errorf("mask %q: want a prefix length or a dotted netmask", mask)
		}
		p, err := a.Prefix(bits)
		if err != nil {
			return err
		}
		it.prefix = p
		return nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		it.prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		return nil
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return fmt.Errorf("not a host name, address or pattern")
		}
	}
	it.name = s
	return nil
}

// Empty reports whether the list has no items (and so restricts nothing).
func (hl HostList) Empty() bool { return len(hl.items) == 0 }

// String is the list as given.
func (hl HostList) String() string {
	texts := make([]string, len(hl.items))
	for i, it := range hl.items {
		texts[i] = it.text
	}
	return strings.Join(texts, ",")
}

// Match reports whether host (an address, as a client's is) is in the
// list. Names in the list are looked up, and the address's names are
// looked up for name wildcards, within ctx; answers are kept a minute.
func (hl HostList) Match(ctx context.Context, host string) bool {
	addr, err := netip.ParseAddr(host)
	if err == nil {
		addr = addr.Unmap()
	}
	matched, positives := false, false
	for _, it := range hl.items {
		if !it.neg {
			positives = true
		}
		if (it.neg || !matched) && hl.matchItem(ctx, it, host, addr) {
			if it.neg {
				return false
			}
			matched = true
		}
	}
	return matched || !positives
}

func (hl HostList) matchItem(ctx context.Context, it hostItem, host string, addr netip.Addr) bool {
	switch {
	case it.any:
		return true
	case it.prefix.IsValid():
		return addr.IsValid() && it.prefix.Contains(addr)
	case it.pattern != "":
		if ok, _ := path.Match(it.pattern, strings.ToLower(host)); ok {
			return true
		}
		if !addr.IsValid() || !it.byName {
			return false
		}
		for _, name := range hl.cache.names(ctx, addr) {
			if ok, _ := path.Match(it.pattern, name); ok {
				return true
			}
		}
		return false
	}
	if strings.EqualFold(host, it.name) {
		return true
	}
	if !addr.IsValid() {
		return false
	}
	for _, a := range hl.cache.addrs(ctx, it.name) {
		if a == addr {
			return true
		}
	}
	return false
}

// nameCache keeps name lookups for a minute, so that a busy entrance does
// not ask the resolver for every connection.
type nameCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	addrs []netip.Addr
	names []string
	until time.Time
}

const (
	cacheFor      = time.Minute
	lookupTimeout = 3 * time.Second
)

func (c *nameCache) get(key string) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e, ok && time.Now().Before(e.until)
}

func (c *nameCache) put(key string, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) > 4096 {
		clear(c.entries)
	}
	e.until = time.Now().Add(cacheFor)
	c.entries[key] = e
}

func (c *nameCache) addrs(ctx context.Context, name string) []netip.Addr {
	if e, ok := c.get("a:" + name); ok {
		return e.addrs
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	addrs, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	c.put("a:"+name, cacheEntry{addrs: addrs})
	return addrs
}

func (c *nameCache) names(ctx context.Context, addr netip.Addr) []string {
	key := "n:" + addr.String()
	if e, ok := c.get(key); ok {
		return e.names
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	names, _ := net.DefaultResolver.LookupAddr(ctx, addr.String())
	for i, n := range names {
		names[i] = strings.ToLower(strings.TrimSuffix(n, "."))
	}
	c.put(key, cacheEntry{names: names})
	return names
}
