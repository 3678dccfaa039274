package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/peers"
	"github.com/sockmux/sockmux/tcpdriver"
)

// Config is what a hub is built from.
type Config struct {
	// Acceptor is the listener the peers of Peers connect to; the hub
	// owns it and closes it when Run ends. Nil for a hub whose members
	// are all attached (Attach: serial ports); then Peers is nil too.
	Acceptor *tcpdriver.Acceptor
	// Peers is the peers file, read. Required with Acceptor.
	Peers *peers.Table
	// Endpoint returns the options of peer p's endpoint: everything but
	// the Driver (the hub's feed), Link.Secret (p's key) and
	// Link.PeerName (p's name), which the hub sets. Its Logger, if nil,
	// is the hub's with the attribute name=NAME. Required with Peers;
	// attached members bring their own options.
	Endpoint func(p peers.Peer) (endpoint.Options, error)
	// Forwards returns the forwards of peer p (those given @p), which
	// its forwarder runs; nil means none. An attached member is asked
	// as the peer of its name, with no key.
	Forwards func(p peers.Peer) []forward.Forward
	// OfferWait is how long a new connection of a peer waits for the
	// peer's link to give up the one it uses; 0 means 35 s (past the
	// dead timeout of TCP).
	OfferWait time.Duration
	// Logger receives the hub's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Hub serves many peers over one listener; see the package comment.
type Hub struct {
	cfg Config
	acc *tcpdriver.Acceptor
	log *slog.Logger

	attachMu sync.Mutex // serializes Attach

	mu       sync.Mutex
	table    *peers.Table       // nil without an Acceptor
	members  map[string]*member // by lower-case name
	attached []string           // the attached members' names, in the order attached
	ctx      context.Context    // Run's, once it runs
	stopped  bool               // Run is stopping: no member starts any more
	proxies  []net.Listener     // AddDynamic's
	running  sync.WaitGroup     // the members' Run
	refused  uint64             // connections refused before a link saw them
}

// member is one peer's endpoint.
type member struct {
	peer    peers.Peer
	ep      *endpoint.Endpoint
	feed    *tcpdriver.Feed // nil for an attached member
	path    string          // an attached member's Attachment.Path
	onStart func(ctx context.Context, ep *endpoint.Endpoint)
	added   time.Time
	done    chan struct{} // closed when its Run returned
}

// Member is what the hub tells of one peer.
type Member struct {
	Peer     peers.Peer
	Endpoint *endpoint.Endpoint
	// Feed is the listener's feed of a peer of the peers file; nil for
	// an attached member, whose driver is Endpoint.Driver.
	Feed *tcpdriver.Feed
	// Path is an attached member's Attachment.Path; "" for a peer of the
	// peers file.
	Path string
}

// Driver is the member's driver: its feed, or an attached member's own.
func (m Member) Driver() link.Driver { return m.Endpoint.Driver }

// Attached reports whether the member was attached (Attach) rather than
// listed in the peers file.
func (m Member) Attached() bool { return m.Feed == nil }

func (m *member) public() Member {
	return Member{Peer: m.peer, Endpoint: m.ep, Feed: m.feed, Path: m.path}
}

// AcceptBacklog is a peer's mux's backlog of streams from the peer not
// yet taken by its forwarder (mux.Config.AcceptBacklog) when
// Config.Endpoint leaves it zero. The forwarder takes each at once, so a
// small backlog costs nothing, while the mux's default (16,384) would
// hold 128 KiB for every idle peer.
const AcceptBacklog = 256

// New builds every peer's endpoint. Nothing runs until Run.
func New(cfg Config) (*Hub, error) {
	switch {
	case cfg.Acceptor == nil && cfg.Peers != nil:
		return nil, errors.New("hub: a peers file (Config.Peers) but no listener (Config.Acceptor)")
	case cfg.Acceptor != nil && cfg.Peers == nil:
		return nil, errors.New("hub: no peers (Config.Peers)")
	case cfg.Peers != nil && cfg.Endpoint == nil:
		return nil, errors.New("hub: no Config.Endpoint")
	}
	if cfg.OfferWait <= 0 {
		cfg.OfferWait = 35 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Hub{cfg: cfg, acc: cfg.Acceptor, log: cfg.Logger, table: cfg.Peers, members: map[string]*member{}}
	if cfg.Peers == nil {
		return h, nil
	}
	for _, p := range cfg.Peers.Peers() {
		m, err := h.build(p)
		if err != nil {
			h.closeAll()
			return nil, err
		}
		h.members[strings.ToLower(p.Name)] = m
	}
	return h, nil
}

// build makes peer p's endpoint and starts its forwards (listeners bind
// now, so that a port in use is reported at once).
func (h *Hub) build(p peers.Peer) (*member, error) {
	opts, err := h.cfg.Endpoint(p)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", p.Name, err)
	}
	feed := h.acc.NewFeed(p.Name)
	opts.Driver = feed
	opts.Link.Secret = p.Key
	opts.Link.PeerName = p.Name
	ep, err := h.endpoint(p, opts)
	if err != nil {
		return nil, err
	}
	return &member{peer: p, ep: ep, feed: feed, added: time.Now(), done: make(chan struct{})}, nil
}

// endpoint builds peer p's endpoint from opts, its driver set, and starts
// its forwards.
func (h *Hub) endpoint(p peers.Peer, opts endpoint.Options) (*endpoint.Endpoint, error) {
	if opts.Mux.AcceptBacklog == 0 {
		opts.Mux.AcceptBacklog = AcceptBacklog
	}
	if opts.Logger == nil {
		opts.Logger = h.log.With("name", p.Name) // "peer" is the peer's session id in the link's logs
	}
	ep, err := endpoint.New(opts)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", p.Name, err)
	}
	if h.cfg.Forwards != nil {
		for _, fw := range h.cfg.Forwards(p) {
			fw.Peer = ""
			if err := ep.Forwarder.Add(fw); err != nil {
				ep.Close()
				return nil, fmt.Errorf("peer %s: %w", p.Name, err)
			}
		}
	}
	return ep, nil
}

// closeAll closes endpoints that never ran.
func (h *Hub) closeAll() {
	for _, m := range h.members {
		m.ep.Close()
	}
}

// Addr is the address the hub listens on; nil without a listener.
func (h *Hub) Addr() net.Addr {
	if h.acc == nil {
		return nil
	}
	return h.acc.Addr()
}

// Run serves the peers until ctx ends, then stops every endpoint (each
// with its grace period, telling its peer goodbye) and returns.
func (h *Hub) Run(ctx context.Context) error {
	h.mu.Lock()
	h.ctx = ctx
	for _, m := range h.members {
		h.start(m)
	}
	attached := len(h.attached)
	h.mu.Unlock()
	served := make(chan error, 1)
	if h.acc != nil {
		go func() { served <- h.acc.Serve(h.handle) }()
		h.log.Info("hub listening", "listen", h.acc.Addr().String(), "peers", h.table.Len(), "peers_file", h.table.Source())
	} else {
		served <- nil
		h.log.Info("hub running", "ports", attached)
	}
	<-ctx.Done()
	if h.acc != nil {
		h.acc.Close()
	}
	<-served
	h.mu.Lock()
	h.stopped = true
	for _, ln := range h.proxies {
		ln.Close()
	}
	h.mu.Unlock()
	h.running.Wait()
	return nil
}

// start runs m's endpoint, under h.mu with h.ctx set.
func (h *Hub) start(m *member) {
	h.running.Add(1)
	go func() {
		defer h.running.Done()
		defer close(m.done)
		if m.onStart != nil {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go m.onStart(ctx, m.ep)
		}
		if err := m.ep.Run(h.ctx); err != nil {
			m.ep.Logger().Error("peer's endpoint ended", "err", err)
		}
	}()
}

// lookup returns the member called name.
func (h *Hub) lookup(name string) (*member, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.members[strings.ToLower(name)]
	return m, ok
}

// handle serves one new connection: it reads the hello, picks the peer by
// name and hands the connection to the peer's endpoint, or refuses it.
func (h *Hub) handle(c net.Conn) {
	from := c.RemoteAddr().String()
	hello, read, err := link.ReadHello(c)
	if err != nil {
		h.log.Debug("connection dropped before its hello", "from", from, "err", err)
		c.Close()
		return
	}
	if hello.Name == "" {
		h.refuse(c, from, "", "this is a hub: the connecting end must name itself (sockmux link --name NAME, a name in the hub's peers file)")
		return
	}
	if h.acc.HeldName(c.RemoteAddr(), hello.Name) {
		h.log.Debug("connection held off after a failed authentication", "from", from, "name", hello.Name)
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(link.Refusal("held off for a while after a failed authentication from this address"))
		c.Close()
		return
	}
	m, ok := h.lookup(hello.Name)
	if !ok {
		h.refuse(c, from, hello.Name, fmt.Sprintf("unknown peer %q: not in the hub's peers file", hello.Name))
		return
	}
	if err := m.feed.Offer(tcpdriver.Prefixed(c, read), h.cfg.OfferWait); err != nil {
		m.ep.Logger().Warn("new connection of the peer dropped", "from", from, "err", err)
		c.Close()
	}
}

// refuse tells a connecting end why it is refused, logs it and holds its
// source off for a while, as a wrong key is.
func (h *Hub) refuse(c net.Conn, from, name, reason string) {
	h.mu.Lock()
	h.refused++
	h.mu.Unlock()
	h.log.Warn("peer refused", "from", from, "name", name, "reason", reason)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(link.Refusal(reason))
	h.acc.PenalizeName(c.RemoteAddr(), name)
	c.Close()
}

// Table is the peers file the hub serves now; nil without a listener.
func (h *Hub) Table() *peers.Table {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.table
}

// Refused is how many connections the hub refused before any peer's link
// saw them (no name, an unknown name).
func (h *Hub) Refused() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refused
}

// Peer returns the endpoint of the peer called name (in any case).
func (h *Hub) Peer(name string) (Member, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.members[strings.ToLower(name)]
	if !ok {
		return Member{}, false
	}
	return m.public(), true
}

// Peers returns every peer's endpoint, in the order of the peers file,
// then the attached members in the order they were attached.
func (h *Hub) Peers() []Member {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Member
	if h.table != nil {
		for _, p := range h.table.Peers() {
			if m, ok := h.members[strings.ToLower(p.Name)]; ok && m.feed != nil {
				out = append(out, m.public())
			}
		}
	}
	for _, name := range h.attached {
		if m, ok := h.members[strings.ToLower(name)]; ok {
			out = append(out, m.public())
		}
	}
	return out
}

// NoPeer says that the hub has no peer called name, for a refusal.
func (h *Hub) NoPeer(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.table != nil {
		return fmt.Sprintf("no peer %q in the hub's peers file", name)
	}
	return fmt.Sprintf("no peer %q on the hub (its peers: %s)", name, strings.Join(h.attached, ", "))
}

// Removed is the reason a removed peer's streams are reset with, and what
// the peer is told.
const Removed = "removed from the hub's peers file"

// Reload makes t the peers the hub serves: new peers get an endpoint,
// removed ones are stopped (their streams reset, the peer told Removed),
// and a changed key applies to the peer's next handshake. It returns what
// changed; an error is a new peer whose endpoint could not be built (its
// forwards failed to start), which is left out (a later Reload tries
// again), while the rest of t applies.
func (h *Hub) Reload(t *peers.Table) (peers.Changes, error) {
	h.mu.Lock()
	old := h.table
	if old == nil {
		h.mu.Unlock()
		return peers.Changes{}, errors.New("hub: no peers file to reload (a hub without a listener)")
	}
	h.table = t
	h.mu.Unlock()
	ch := t.Diff(old)
	var errs []error
	var stopped []*member
	for _, name := range ch.Removed {
		h.mu.Lock()
		m, ok := h.members[strings.ToLower(name)]
		delete(h.members, strings.ToLower(name))
		running := h.ctx != nil
		h.mu.Unlock()
		if !ok {
			continue
		}
		m.ep.Logger().Warn("peer removed from the peers file: disconnecting it")
		if running {
			m.ep.Stop(0, Removed)
			stopped = append(stopped, m)
		} else {
			m.ep.Close()
		}
	}
	for _, name := range ch.Rekeyed {
		p, _ := t.Lookup(name)
		if m, ok := h.lookup(name); ok {
			h.mu.Lock()
			m.peer = p
			h.mu.Unlock()
			if err := m.ep.Link.SetSecret(p.Key); err != nil {
				errs = append(errs, fmt.Errorf("peer %s: %w", name, err))
				continue
			}
			m.ep.Logger().Info("peer's key changed: it applies to the peer's next handshake")
		}
	}
	// Stopped peers give their ports up before new ones take them.
	for _, m := range stopped {
		select {
		case <-m.done:
		case <-time.After(endpoint.Linger + time.Second):
			m.ep.Logger().Warn("removed peer's endpoint still stopping; new peers' forwards may find its ports in use")
		}
	}
	for _, name := range ch.Added {
		p, _ := t.Lookup(name)
		if _, ok := h.lookup(name); ok {
			continue
		}
		m, err := h.build(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h.mu.Lock()
		h.members[strings.ToLower(name)] = m
		if h.ctx != nil {
			h.start(m)
		}
		h.mu.Unlock()
		m.ep.Logger().Info("peer added from the peers file")
	}
	// A peer whose endpoint could not be built earlier is tried again.
	for _, p := range t.Peers() {
		if slices.Contains(ch.Added, p.Name) {
			continue
		}
		if _, ok := h.lookup(p.Name); ok {
			continue
		}
		m, err := h.build(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h.mu.Lock()
		h.members[strings.ToLower(p.Name)] = m
		if h.ctx != nil {
			h.start(m)
		}
		h.mu.Unlock()
	}
	return ch, errors.Join(errs...)
}
