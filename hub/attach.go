package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/peers"
)

// Attachment is a member the hub does not accept over its listener but
// runs over a driver of its own: a serial port of the process (sockmux
// link --comm A --comm B). Its far end is a plain end: it gives no name
// and the member's link asks for none; a key, if any, is Options'.
type Attachment struct {
	// Name is the peer's name (link.CheckName), unique on the hub in any
	// case: forwards reach it as @NAME, -D as HOST.NAME.sockmux.
	Name string
	// Path is what the member was made from (a device path or identity),
	// for status and to refuse attaching it twice; "" for none.
	Path string
	// Options are the member's endpoint's, Driver included (the hub owns
	// it from then on). A zero Mux.AcceptBacklog is AcceptBacklog; a nil
	// Logger is the hub's with name=NAME.
	Options endpoint.Options
	// Start, if set, runs beside the member's endpoint once it runs (a
	// controller that needs it, such as --baud auto's), with a context
	// that ends when the endpoint stops.
	Start func(ctx context.Context, ep *endpoint.Endpoint)
}

// Attach adds a member with its own driver. Its forwards
// (Config.Forwards, asked for the peer of its name) start at once; its
// endpoint runs with the others, at once if Run is running. A name or a
// path the hub has already, or a bad name, is an error, and so is a
// driver that fails to build into an endpoint; the driver is then
// closed.
func (h *Hub) Attach(a Attachment) (*endpoint.Endpoint, error) {
	h.attachMu.Lock()
	defer h.attachMu.Unlock()
	fail := func(err error) (*endpoint.Endpoint, error) {
		if c, ok := a.Options.Driver.(interface{ Close() error }); ok {
			_ = c.Close()
		}
		return nil, err
	}
	if a.Options.Driver == nil {
		return fail(fmt.Errorf("hub: attaching %s: no driver (Options.Driver)", a.Name))
	}
	if err := link.CheckName(a.Name); err != nil {
		return fail(fmt.Errorf("hub: attaching %s: %w", a.Path, err))
	}
	h.mu.Lock()
	_, taken := h.members[strings.ToLower(a.Name)]
	if h.table != nil {
		if _, ok := h.table.Lookup(a.Name); ok {
			taken = true
		}
	}
	var twice string
	if a.Path != "" {
		for _, m := range h.members {
			if m.path == a.Path {
				twice = m.peer.Name
			}
		}
	}
	stopped := h.stopped
	h.mu.Unlock()
	switch {
	case stopped:
		return fail(fmt.Errorf("hub: attaching %s: the hub has stopped", a.Name))
	case taken:
		return fail(fmt.Errorf("hub: attaching %s: the hub has a peer called %s already", a.Path, a.Name))
	case twice != "":
		return fail(fmt.Errorf("hub: %s is attached already, as peer %s", a.Path, twice))
	}
	p := peers.Peer{Name: a.Name}
	ep, err := h.endpoint(p, a.Options)
	if err != nil {
		return fail(err)
	}
	m := &member{peer: p, ep: ep, path: a.Path, onStart: a.Start, added: time.Now(), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		ep.Close()
		return nil, fmt.Errorf("hub: attaching %s: the hub has stopped", a.Name)
	}
	h.members[strings.ToLower(a.Name)] = m
	h.attached = append(h.attached, a.Name)
	if h.ctx != nil {
		h.start(m)
	}
	return ep, nil
}

// FreeName is name, or name with a suffix (-2, -3, ...) that no member
// of the hub has, cut to link.MaxName characters: UniqueName with the
// hub's names taken.
func (h *Hub) FreeName(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return UniqueName(name, func(n string) bool {
		if _, ok := h.members[strings.ToLower(n)]; ok {
			return true
		}
		if h.table != nil {
			if _, ok := h.table.Lookup(n); ok {
				return true
			}
		}
		return false
	})
}

// UniqueName is name if taken says it is free, else name with the first
// suffix -2, -3, ... that makes it free, cut to link.MaxName characters.
// Names are compared in any case; taken is asked so.
func UniqueName(name string, taken func(string) bool) string {
	if !taken(name) {
		return name
	}
	for i := 2; ; i++ {
		suffix := "-" + strconv.Itoa(i)
		n := name
		if len(n)+len(suffix) > link.MaxName {
			n = strings.TrimRight(n[:link.MaxName-len(suffix)], "-")
		}
		if !taken(n + suffix) {
			return n + suffix
		}
	}
}

// PortName is the peer name a port goes by when it is not given one:
// the last element of its path (/dev/ttyUSB0 is ttyUSB0, a
// /dev/serial/by-id link is its adapter's long name, COM3 is COM3), or a
// USB identity as it is written (usb:0403:6001:A10K3ZP is
// usb-0403-6001-A10K3ZP), made a valid name: each run of characters
// other than letters, digits, '-' and '_' becomes one '-', leading and
// trailing '-' go, and a name longer than link.MaxName keeps its first
// characters and ends with 8 hexadecimal digits of a hash of the whole,
// so that names stay distinct and the same path always gets the same
// name. A path with nothing left is "port".
func PortName(path string) string {
	base := path
	if !strings.HasPrefix(path, "usb:") && !strings.HasPrefix(path, "serial:") {
		base = filepath.Base(strings.ReplaceAll(strings.TrimRight(path, `/\`), `\`, "/"))
	}
	var b strings.Builder
	dash := false
	for _, r := range base {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			if r == '-' && dash {
				continue
			}
			b.WriteRune(r)
			dash = r == '-'
			continue
		}
		if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.Trim(b.String(), "-")
	if name == "" || name == "." {
		return "port"
	}
	if len(name) > link.MaxName {
		sum := sha256.Sum256([]byte(path))
		tag := hex.EncodeToString(sum[:4])
		name = strings.TrimRight(name[:link.MaxName-len(tag)-1], "-") + "-" + tag
	}
	return name
}

// GlobOptions are what WatchGlob needs besides its pattern.
type GlobOptions struct {
	// Every is how often the pattern is matched again; 0 means a second.
	Every time.Duration
	// Attachment returns the member for a new match, path (a name is
	// given: PortName of it, free on the hub). An error leaves the path
	// out, logged once, until it stops matching and matches again.
	Attachment func(name, path string) (Attachment, error)
	// Skip reports a path to leave alone (one the hub has already under
	// another path); nil skips none.
	Skip func(path string) bool
}

// WatchGlob attaches a member for each path matching pattern
// (filepath.Match syntax), now and, polling, as new ones appear, until
// ctx ends: adapters picked up as they are plugged in. A path that stops
// matching keeps its member, whose driver waits for the device as for an
// unplugged one; when the path matches again, that member has it again.
// A bad pattern is an error at once.
func (h *Hub) WatchGlob(ctx context.Context, pattern string, o GlobOptions) error {
	if _, err := filepath.Match(pattern, ""); err != nil {
		return fmt.Errorf("glob %q: %w", pattern, err)
	}
	if o.Attachment == nil {
		return errors.New("hub: WatchGlob needs GlobOptions.Attachment")
	}
	if o.Every <= 0 {
		o.Every = time.Second
	}
	failed := map[string]bool{} // paths left out, logged; cleared when they stop matching
	scan := func() {
		paths, _ := filepath.Glob(pattern)
		slices.Sort(paths)
		now := map[string]bool{}
		for _, path := range paths {
			now[path] = true
			if failed[path] || h.hasPath(path) || o.Skip != nil && o.Skip(path) {
				continue
			}
			name := h.FreeName(PortName(path))
			a, err := o.Attachment(name, path)
			if err == nil {
				a.Name, a.Path = name, path
				_, err = h.Attach(a)
			}
			if err != nil {
				h.log.Warn("port left out", "glob", pattern, "path", path, "err", err)
				failed[path] = true
				continue
			}
			h.log.Info("port found: a new peer", "glob", pattern, "path", path, "peer", name)
		}
		for path := range failed {
			if !now[path] {
				delete(failed, path)
			}
		}
	}
	scan()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			scan()
		}
	}
}

// hasPath reports whether a member was attached from path.
func (h *Hub) hasPath(path string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.members {
		if m.path == path {
			return true
		}
	}
	return false
}
