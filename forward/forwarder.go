package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/sockmux/sockmux/mux"
)

// Config tunes a Forwarder.
type Config struct {
	// LinkWait is how long a client that connects while the link is down
	// waits for it before it is turned away.
	LinkWait time.Duration
	// DialTimeout bounds a connection to a destination.
	DialTimeout time.Duration
	// Rules are the exit rules (--server, --dest): the first that matches
	// a stream from the far end decides where it goes. Apply replaces
	// them.
	Rules []Rule
	// Route decides where a stream from the far end goes. Nil means
	// DefaultRoute.
	Route func(info mux.Info) (Target, error)
	// Allow, when not empty, limits where streams from the far end may
	// connect (--allow): the destinations of rules, of our remote
	// forwards, of the far end's requests and of the built-in proxies'
	// clients alike. SetAllow replaces it.
	Allow *Policy
	// UDPTimeout ends a UDP session (the datagrams of one client address)
	// after this much silence both ways; default 180 s.
	UDPTimeout time.Duration
	// UDPMaxSessions bounds the UDP sessions of one listener; when a new
	// client comes at the limit, the longest idle session ends. Default
	// 1024.
	UDPMaxSessions int
	// LinkCounters reads the counters of the link under the mux, for the
	// link test's counters service (DiagCounters); nil means this end
	// does not tell them. Package endpoint sets it.
	LinkCounters func() LinkCounters
	// Services are services besides this package's own (Services) that
	// the forwarder serves over streams for their owner, by the name an
	// opener gives in mux.Info.Service (e.g. --baud auto's, package
	// autobaud): the handler takes the stream, accepts or resets it, and
	// owns it from then on. Package endpoint names them in the link's
	// hello. A name of this package's own is not taken.
	Services map[string]func(ctx context.Context, s *mux.Stream)
	// Logger receives the forwarder's logs.
	Logger *slog.Logger
}

// Target is where a stream from the far end goes.
type Target struct {
	Dest  string    // host:port to connect to; empty with Proxy
	Proxy ProxyKind // a built-in proxy that asks the client where to go
	Rule  string    // the rule that chose the target, if one did
}

// NoRouteError is a stream that no rule routes; the far end's client is
// told the reason.
type NoRouteError struct{ Info mux.Info }

func (e *NoRouteError) Error() string {
	network := e.Info.Network
	if network == "" {
		network = "tcp"
	}
	return fmt.Sprintf("no route for a %s connection from %s that entered at port %d: no rule matches and it names no destination",
		network, e.Info.Client, e.Info.Entrance)
}

// Forwarder ties local listeners and far-end streams together over a mux.
type Forwarder struct {
	cfg Config
	m   *mux.Mux
	log *slog.Logger

	applyMu sync.Mutex // one Add or Apply at a time
	mu      sync.Mutex
	remotes map[uint64]Forward // our -R forwards by tag
	nextTag uint64
	rules   []Rule                 // the exit rules; Apply replaces them
	allow   *Policy                // --allow; SetAllow replaces it
	active  []*active              // our forwards, in the order added
	peerLns map[uint64][]io.Closer // listeners opened for the far end, by its tag, per session
	closed  bool
	conns   sync.WaitGroup
}

// active is one of our forwards, running.
type active struct {
	fw  Forward
	lns []io.Closer // its listeners here (Local, Dynamic, Entrance)
	tag uint64      // its tag (Remote)
}

// New makes a Forwarder over m. Its OnListen, OnUnlisten and OnSessionEnd
// belong in m's Config, and Serve must run (package endpoint does both).
func New(m *mux.Mux, cfg Config) *Forwarder {
	if cfg.LinkWait == 0 {
		cfg.LinkWait = 30 * time.Second
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.UDPTimeout == 0 {
		cfg.UDPTimeout = 180 * time.Second
	}
	if cfg.UDPMaxSessions == 0 {
		cfg.UDPMaxSessions = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &Forwarder{cfg: cfg, m: m, log: cfg.Logger, remotes: make(map[uint64]Forward),
		rules: cfg.Rules, allow: cfg.Allow, peerLns: make(map[uint64][]io.Closer)}
	if f.cfg.Route == nil {
		f.cfg.Route = f.DefaultRoute
	}
	return f
}

// DefaultRoute routes a stream from the far end: a stream of one of our
// remote forwards (-R) goes to that forward's destination; any other goes
// where the first matching rule says; failing that, to the destination
// its opener asked for (-L, -D); failing that, nowhere (*NoRouteError).
func (f *Forwarder) DefaultRoute(info mux.Info) (Target, error) {
	f.mu.Lock()
	r, ok := f.remotes[info.Tag]
	withdrawn := info.Tag != 0 && !ok && info.Tag <= f.nextTag
	rules := f.rules
	f.mu.Unlock()
	switch {
	case ok:
		return Target{Dest: r.Dest}, nil
	case withdrawn:
		// A remote forward removed by Apply, whose listener at the far
		// end was still open.
		return Target{}, &NoRouteError{Info: info}
	}
	for _, r := range rules {
		if r.Matches(context.Background(), info) {
			return r.Target(info)
		}
	}
	if info.Dest != "" {
		return Target{Dest: info.Dest}, nil
	}
	return Target{}, &NoRouteError{Info: info}
}

// Add starts a forward: for Local, Dynamic and Entrance it listens now (an
// error such as a port in use is returned at once); for Remote it asks
// the far end to listen, now and after every new session.
func (f *Forwarder) Add(fw Forward) error {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	a, err := f.start(fw)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.active = append(f.active, a)
	f.mu.Unlock()
	return nil
}

// start starts fw; the caller records it in f.active.
func (f *Forwarder) start(fw Forward) (*active, error) {
	if fw.Peer != "" {
		return nil, fmt.Errorf("%v is addressed to peer %s: only a hub (--listen with --peers) has peers", fw, fw.Peer)
	}
	a := &active{fw: fw}
	switch fw.Kind {
	case Local, Entrance:
		info := func(client string, entrance int) mux.Info {
			return mux.Info{Network: fw.Network, Dest: fw.Dest, Entrance: entrance, Client: client}
		}
		ln, addr, err := f.listen(fw.Network, fw.Bind, info)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", fw, err)
		}
		a.lns = append(a.lns, ln)
		f.log.Info("forwarding", "forward", fw.String(), "listen", addr)
		return a, nil
	case Dynamic:
		ln, err := net.Listen("tcp", fw.Bind)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", fw, err)
		}
		a.lns = append(a.lns, ln)
		f.log.Info("forwarding", "forward", fw.String(), "listen", ln.Addr().String(), "proxy", "SOCKS5, SOCKS4a, HTTP")
		go f.acceptLoop(ln, func(c net.Conn) { f.serveDynamic(c, portOf(ln.Addr())) })
		return a, nil
	case Remote:
		f.mu.Lock()
		f.nextTag++
		a.tag = f.nextTag
		f.remotes[a.tag] = fw
		f.mu.Unlock()
		if err := f.m.ListenRemote(mux.ListenRequest{Network: fw.Network, Bind: fw.Bind, Tag: a.tag}); err != nil {
			f.mu.Lock()
			delete(f.remotes, a.tag)
			f.mu.Unlock()
			return nil, fmt.Errorf("%v: %w", fw, err)
		}
		f.log.Info("forwarding", "forward", fw.String())
		return a, nil
	}
	return nil, fmt.Errorf("%v: not supported", fw)
}

// stop stops a forward started by start: its listeners close (or the far
// end is asked to close its listener); connections under way go on.
func (f *Forwarder) stop(a *active) {
	for _, ln := range a.lns {
		ln.Close()
	}
	if a.fw.Kind == Remote {
		f.mu.Lock()
		delete(f.remotes, a.tag)
		f.mu.Unlock()
		f.m.UnlistenRemote(a.tag)
	}
}

// listen opens a TCP listener or a UDP socket whose connections or
// datagrams cross the link as streams described by info.
func (f *Forwarder) listen(network, bind string, info func(client string, entrance int) mux.Info) (io.Closer, string, error) {
	if network == "udp" {
		pc, err := net.ListenPacket("udp", bind)
		if err != nil {
			return nil, "", err
		}
		entrance := portOf(pc.LocalAddr())
		e := f.newUDPEntrance(pc, func(client string) mux.Info { return info(client, entrance) })
		go e.run()
		return e, pc.LocalAddr().String() + "/udp", nil
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, "", err
	}
	entrance := portOf(ln.Addr())
	go f.acceptLoop(ln, func(c net.Conn) { f.carry(c, info(c.RemoteAddr().String(), entrance)) })
	return ln, ln.Addr().String(), nil
}

// OnListen opens a listener the far end asked for (its -R); it lasts as
// long as the session. Use it as mux.Config.OnListen.
func (f *Forwarder) OnListen(req mux.ListenRequest) error {
	network := req.Network
	if network == "" {
		network = "tcp"
	}
	if network != "tcp" && network != "udp" {
		return fmt.Errorf("remote forward on %s: network %q is not supported", req.Bind, req.Network)
	}
	info := func(client string, entrance int) mux.Info {
		return mux.Info{Network: network, Entrance: entrance, Client: client, Tag: req.Tag}
	}
	ln, addr, err := f.listen(network, req.Bind, info)
	if err != nil {
		f.log.Error("cannot listen for the far end's remote forward", "bind", req.Bind, "network", network, "err", err)
		return err
	}
	f.mu.Lock()
	closed := f.closed
	if !closed {
		f.peerLns[req.Tag] = append(f.peerLns[req.Tag], ln)
	}
	f.mu.Unlock()
	if closed {
		ln.Close()
		return errors.New("sockmux is shutting down")
	}
	f.log.Info("listening for the far end's remote forward", "listen", addr)
	return nil
}

// OnUnlisten closes the listener opened for the far end's remote forward
// with req.Tag, which the far end dropped; connections it accepted go
// on. Use it as mux.Config.OnUnlisten.
func (f *Forwarder) OnUnlisten(req mux.ListenRequest) error {
	f.mu.Lock()
	lns := f.peerLns[req.Tag]
	delete(f.peerLns, req.Tag)
	f.mu.Unlock()
	if len(lns) == 0 {
		return fmt.Errorf("no listener for the remote forward on %s", req.Bind)
	}
	for _, ln := range lns {
		ln.Close()
	}
	f.log.Info("closed the listener of the far end's removed remote forward", "bind", req.Bind)
	return nil
}

// OnSessionEnd closes the listeners opened for the far end: a new session
// asks for them again. Use it as mux.Config.OnSessionEnd.
func (f *Forwarder) OnSessionEnd(error) {
	f.mu.Lock()
	lns := f.peerLns
	f.peerLns = make(map[uint64][]io.Closer)
	f.mu.Unlock()
	for _, tagged := range lns {
		for _, ln := range tagged {
			ln.Close()
		}
	}
}

// acceptLoop hands each connection accepted on ln to handle, in its own
// goroutine.
func (f *Forwarder) acceptLoop(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.log.Warn("accept failed", "listen", ln.Addr().String(), "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		f.conns.Add(1)
		go func() {
			defer f.conns.Done()
			handle(c)
		}()
	}
}

// carry opens a stream for client connection c and joins the two.
func (f *Forwarder) carry(c net.Conn, info mux.Info) {
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.LinkWait)
	s, err := f.m.Open(ctx, info)
	cancel()
	if err != nil {
		f.log.Warn("connection turned away", "client", info.Client, "entrance", info.Entrance, "err", err)
		resetConn(c)
		return
	}
	log := f.log.With("stream", s.ID(), "client", info.Client, "entrance", info.Entrance)
	if info.Dest != "" {
		log = log.With("dest", info.Dest)
	}
	log.Debug("stream opened")
	up, down, err := Join(c, s)
	logEnd(log, err, up, down)
}

// logEnd logs how a carried connection ended: a refusal by the far end
// as a warning with its reason, other failures as information.
func logEnd(log *slog.Logger, err error, up, down int64) {
	var re *mux.ResetError
	switch {
	case err == nil:
		log.Debug("connection closed", "sent", up, "received", down)
	case errors.As(err, &re) && re.Remote && refusal(re.Code):
		log.Warn("far end refused the connection", "code", re.Code.String(), "reason", re.Reason)
	default:
		log.Info("connection ended", "err", err, "sent", up, "received", down)
	}
}

// refusal reports whether code means the far end would not or could not
// connect the stream, as opposed to a connection that broke.
func refusal(code mux.ResetCode) bool {
	switch code {
	case mux.CodeRefused, mux.CodeUnreachable, mux.CodeTimeout, mux.CodeDenied, mux.CodeNoRoute, mux.CodeLimit:
		return true
	}
	return false
}

// Serve routes the streams the far end opens until ctx ends or the mux
// closes.
func (f *Forwarder) Serve(ctx context.Context) error {
	for {
		s, err := f.m.AcceptStream(ctx)
		if err != nil {
			return err
		}
		f.conns.Add(1)
		go func() {
			defer f.conns.Done()
			f.deliver(ctx, s)
		}()
	}
}

// deliver connects stream s to where it is routed.
func (f *Forwarder) deliver(ctx context.Context, s *mux.Stream) {
	info := s.Info()
	log := f.log.With("stream", s.ID(), "client", info.Client, "entrance", info.Entrance)
	if info.Service != "" { // one of this end's services, never routed (services.go)
		f.serveService(ctx, s, log.With("service", info.Service))
		return
	}
	if info.Network == "udp" {
		log = log.With("network", "udp")
	}
	t, err := f.cfg.Route(info)
	if err != nil {
		var nr *NoRouteError
		code := mux.CodeDenied
		if errors.As(err, &nr) {
			code = mux.CodeNoRoute
		}
		log.Warn("stream refused", "reason", err)
		s.Reset(code, err.Error())
		return
	}
	if t.Rule != "" {
		log = log.With("rule", t.Rule)
	}
	switch {
	case t.Proxy != "" && info.Network == "udp":
		reason := fmt.Sprintf("the built-in %s proxy serves TCP only", t.Proxy)
		log.Warn("stream refused", "reason", reason)
		s.Reset(mux.CodeDenied, reason)
	case t.Proxy != "":
		s.Accept()
		log.Debug("stream handed to the built-in proxy", "proxy", string(t.Proxy))
		serveProxy(ctx, s, t.Proxy, f.dialConnect, log)
	case info.Network == "udp":
		f.deliverUDP(ctx, s, t.Dest, log)
	default:
		f.deliverTCP(ctx, s, t.Dest, log)
	}
}

// dial connects to dest for a stream from the far end, if the policy
// allows it.
func (f *Forwarder) dial(ctx context.Context, network, dest string) (net.Conn, error) {
	addr := dest
	f.mu.Lock()
	allow := f.allow
	f.mu.Unlock()
	if !allow.Empty() {
		rctx, cancel := context.WithTimeout(ctx, f.cfg.DialTimeout)
		a, err := allow.Resolve(rctx, dest)
		cancel()
		if err != nil {
			return nil, err
		}
		addr = a
	}
	d := net.Dialer{Timeout: f.cfg.DialTimeout}
	return d.DialContext(ctx, network, addr)
}

func (f *Forwarder) deliverTCP(ctx context.Context, s *mux.Stream, dest string, log *slog.Logger) {
	c, err := f.dial(ctx, "tcp", dest)
	if err != nil {
		code, reason := DialFailure(dest, err)
		log.Info("destination unreachable", "dest", dest, "reason", reason)
		s.Reset(code, reason)
		return
	}
	s.Accept()
	log = log.With("dest", dest)
	log.Debug("stream connected")
	up, down, err := Join(c, s)
	if err != nil {
		log.Info("connection ended", "err", err, "sent", up, "received", down)
	}
}

// dialConnect connects a built-in proxy's client here, at the exit.
func (f *Forwarder) dialConnect(ctx context.Context, dest, _ string) (net.Conn, error) {
	c, err := f.dial(ctx, "tcp", dest)
	if err != nil {
		code, reason := DialFailure(dest, err)
		return nil, &connectError{code: code, reason: reason}
	}
	return c, nil
}

// serveDynamic serves a -D client: the local proxy learns where it wants
// to go, and that destination travels in the stream's open frame; the
// client hears back once the far end has connected or refused.
func (f *Forwarder) serveDynamic(c net.Conn, entrance int) {
	client := c.RemoteAddr().String()
	log := f.log.With("client", client, "entrance", entrance)
	connect := func(ctx context.Context, dest, proto string) (net.Conn, error) {
		return f.Connect(ctx, dest, proto, client, entrance)
	}
	serveProxy(context.Background(), c, ProxySOCKS, connect, log)
}

// Connect opens a stream to dest ("host:port") at the far end for a proxy
// client (-D, or a hub's -D, which picks the forwarder by the peer the
// host names), waiting up to LinkWait for the link, and returns it once
// the far end connected. proto is the client's protocol ("socks5",
// "socks4", "http"), client its address and entrance the port it came
// in at. A failure is an error ServeProxy turns into the client's reply.
func (f *Forwarder) Connect(ctx context.Context, dest, proto, client string, entrance int) (net.Conn, error) {
	octx, cancel := context.WithTimeout(ctx, f.cfg.LinkWait)
	s, err := f.m.Open(octx, mux.Info{Network: "tcp", Dest: dest, Entrance: entrance, Client: client, Proto: proto})
	cancel()
	if err != nil {
		return nil, &connectError{code: mux.CodeSessionEnded, reason: "sockmux link: " + err.Error()}
	}
	wctx, cancel := context.WithTimeout(ctx, f.cfg.DialTimeout+acceptSlack)
	err = s.WaitAccepted(wctx)
	cancel()
	if err != nil {
		s.Close()
		var re *mux.ResetError
		if errors.As(err, &re) {
			return nil, &connectError{code: re.Code, reason: re.Reason, remote: re.Remote}
		}
		return nil, &connectError{code: mux.CodeTimeout, reason: "the far end did not answer in time"}
	}
	return s, nil
}

// ConnectFunc connects a proxy's client to dest ("host:port"); proto
// names the client's protocol. A failure made with ConnectRefused, or
// returned by Forwarder.Connect, gives the client the matching reply.
type ConnectFunc func(ctx context.Context, dest, proto string) (net.Conn, error)

// ConnectRefused is a failure of a ConnectFunc: the client's SOCKS or
// HTTP reply follows code, and reason is logged.
func ConnectRefused(code mux.ResetCode, reason string) error {
	return &connectError{code: code, reason: reason}
}

// ServeProxy serves one client c of a SOCKS5/SOCKS4a/HTTP proxy whose
// connections connect makes (a hub's -D), until the client's connection
// ends; it logs what happens and closes c.
func ServeProxy(c net.Conn, connect ConnectFunc, log *slog.Logger) {
	serveProxy(context.Background(), c, ProxySOCKS, connectFunc(connect), log)
}

// acceptSlack is how much longer than its own dial timeout a -D client
// waits for the far end's answer, for the link's round trip.
const acceptSlack = 20 * time.Second

// netUnreachable starts the reason of a stream whose destination's network
// is unreachable, which a SOCKS5 client is told apart from an unreachable
// host.
const netUnreachable = "network unreachable: cannot reach"

// DialFailure turns a dial error into a reset code and a reason a client
// can act on, e.g. "connection refused by 10.1.2.3:80".
func DialFailure(dest string, err error) (mux.ResetCode, string) {
	var ne net.Error
	var dnsErr *net.DNSError
	var denied *DeniedError
	switch {
	case errors.As(err, &denied):
		return mux.CodeDenied, denied.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return mux.CodeRefused, "connection refused by " + dest
	case errors.As(err, &dnsErr):
		return mux.CodeUnreachable, fmt.Sprintf("cannot resolve %s: %v", dnsErr.Name, dnsErr.Err)
	case errors.Is(err, syscall.ENETUNREACH):
		return mux.CodeUnreachable, fmt.Sprintf("%s %s: %v", netUnreachable, dest, err)
	case errors.Is(err, syscall.EHOSTUNREACH):
		return mux.CodeUnreachable, fmt.Sprintf("%s unreachable: %v", dest, err)
	case errors.As(err, &ne) && ne.Timeout():
		return mux.CodeTimeout, "connection to " + dest + " timed out"
	}
	return mux.CodeUnreachable, fmt.Sprintf("connect to %s: %v", dest, err)
}

// Close stops every listener; connections under way go on. Wait waits for
// them.
func (f *Forwarder) Close() {
	f.mu.Lock()
	var lns []io.Closer
	for _, a := range f.active {
		lns = append(lns, a.lns...)
	}
	for _, tagged := range f.peerLns {
		lns = append(lns, tagged...)
	}
	f.active, f.peerLns = nil, make(map[uint64][]io.Closer)
	f.closed = true
	f.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
}

// Wait waits until every connection has ended or ctx ends.
func (f *Forwarder) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { f.conns.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
