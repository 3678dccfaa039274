package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
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
	// Route decides where a stream from the far end goes. Nil means
	// DefaultRoute: remote forwards by tag, then the requested destination.
	Route func(info mux.Info) (Target, error)
	// Logger receives the forwarder's logs.
	Logger *slog.Logger
}

// Target is where a stream from the far end goes.
type Target struct {
	Dest string // host:port to connect to
}

// NoRouteError is a stream that no rule routes; the far end's client is
// told the reason.
type NoRouteError struct{ Info mux.Info }

func (e *NoRouteError) Error() string {
	return fmt.Sprintf("no route for a connection from %s that entered at port %d", e.Info.Client, e.Info.Entrance)
}

// Forwarder ties local listeners and far-end streams together over a mux.
type Forwarder struct {
	cfg Config
	m   *mux.Mux
	log *slog.Logger

	mu      sync.Mutex
	remotes map[uint64]Forward // our -R forwards by tag
	nextTag uint64
	lns     []net.Listener // our own listeners (-L, -D)
	peerLns []net.Listener // listeners opened for the far end, per session
	closed  bool
	conns   sync.WaitGroup
}

// New makes a Forwarder over m. Install its OnListen and OnSessionEnd in
// the mux's Config (see MuxHooks) and run Serve.
func New(m *mux.Mux, cfg Config) *Forwarder {
	if cfg.LinkWait == 0 {
		cfg.LinkWait = 30 * time.Second
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &Forwarder{cfg: cfg, m: m, log: cfg.Logger, remotes: make(map[uint64]Forward)}
	if f.cfg.Route == nil {
		f.cfg.Route = f.DefaultRoute
	}
	return f
}

// SetMux sets the mux, for when the mux is made after the forwarder (its
// config needs the forwarder's hooks).
func (f *Forwarder) SetMux(m *mux.Mux) { f.m = m }

// DefaultRoute routes a stream of one of our remote forwards to its
// destination, and any other to the destination its opener asked for.
func (f *Forwarder) DefaultRoute(info mux.Info) (Target, error) {
	if info.Tag != 0 {
		f.mu.Lock()
		r, ok := f.remotes[info.Tag]
		f.mu.Unlock()
		if ok {
			return Target{Dest: r.Dest}, nil
		}
	}
	if info.Dest != "" {
		return Target{Dest: info.Dest}, nil
	}
	return Target{}, &NoRouteError{Info: info}
}

// Add starts a forward: for Local it listens now (an error such as a port
// in use is returned at once); for Remote it asks the far end to listen,
// now and after every new session.
func (f *Forwarder) Add(fw Forward) error {
	switch fw.Kind {
	case Local:
		if fw.Network == "udp" {
			return fmt.Errorf("%v: UDP forwarding is not supported yet", fw)
		}
		ln, err := net.Listen("tcp", fw.Bind)
		if err != nil {
			return fmt.Errorf("%v: %w", fw, err)
		}
		f.track(ln, false)
		f.log.Info("forwarding", "forward", fw.String(), "listen", ln.Addr().String())
		go f.acceptLoop(ln, func(c net.Conn) mux.Info {
			return mux.Info{Network: "tcp", Dest: fw.Dest, Entrance: portOf(ln.Addr()), Client: c.RemoteAddr().String()}
		})
		return nil
	case Remote:
		if fw.Network == "udp" {
			return fmt.Errorf("%v: UDP forwarding is not supported yet", fw)
		}
		f.mu.Lock()
		f.nextTag++
		tag := f.nextTag
		f.remotes[tag] = fw
		f.mu.Unlock()
		f.m.ListenRemote(mux.ListenRequest{Network: fw.Network, Bind: fw.Bind, Tag: tag})
		f.log.Info("forwarding", "forward", fw.String())
		return nil
	}
	return fmt.Errorf("%v: not supported", fw)
}

func (f *Forwarder) track(ln net.Listener, forPeer bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if forPeer {
		f.peerLns = append(f.peerLns, ln)
	} else {
		f.lns = append(f.lns, ln)
	}
}

// OnListen opens a listener the far end asked for (its -R); it lasts as
// long as the session. Use it as mux.Config.OnListen.
func (f *Forwarder) OnListen(req mux.ListenRequest) error {
	if req.Network != "tcp" && req.Network != "" {
		return fmt.Errorf("remote forward on %s: only TCP is supported", req.Bind)
	}
	ln, err := net.Listen("tcp", req.Bind)
	if err != nil {
		f.log.Error("cannot listen for the far end's remote forward", "bind", req.Bind, "err", err)
		return err
	}
	f.track(ln, true)
	f.log.Info("listening for the far end's remote forward", "listen", ln.Addr().String())
	go f.acceptLoop(ln, func(c net.Conn) mux.Info {
		return mux.Info{Network: "tcp", Entrance: portOf(ln.Addr()), Client: c.RemoteAddr().String(), Tag: req.Tag}
	})
	return nil
}

// OnSessionEnd closes the listeners opened for the far end: a new session
// asks for them again. Use it as mux.Config.OnSessionEnd.
func (f *Forwarder) OnSessionEnd(error) {
	f.mu.Lock()
	lns := f.peerLns
	f.peerLns = nil
	f.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
}

// acceptLoop carries each connection accepted on ln over a new stream.
func (f *Forwarder) acceptLoop(ln net.Listener, info func(net.Conn) mux.Info) {
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
			f.carry(c, info(c))
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
	log := f.log.With("stream", s.ID(), "client", info.Client, "dest", info.Dest)
	log.Debug("stream opened")
	up, down, err := Join(c, s)
	if err != nil {
		log.Info("connection ended", "err", err, "sent", up, "received", down)
	} else {
		log.Debug("connection closed", "sent", up, "received", down)
	}
}

// Serve routes the streams the far end opens until ctx ends or the mux
// closes.
func (f *Forwarder) Serve(ctx context.Context) error {
	for {
		s, err := f.m.Accept(ctx)
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
	d := net.Dialer{Timeout: f.cfg.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", t.Dest)
	if err != nil {
		code, reason := DialFailure(t.Dest, err)
		log.Info("destination unreachable", "dest", t.Dest, "reason", reason)
		s.Reset(code, reason)
		return
	}
	s.Accept()
	log = log.With("dest", t.Dest)
	log.Debug("stream connected")
	up, down, err := Join(c, s)
	if err != nil {
		log.Info("connection ended", "err", err, "sent", up, "received", down)
	}
}

// DialFailure turns a dial error into a reset code and a reason a client
// can act on, e.g. "connection refused by 10.1.2.3:80".
func DialFailure(dest string, err error) (mux.ResetCode, string) {
	var ne net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return mux.CodeRefused, "connection refused by " + dest
	case errors.As(err, &dnsErr):
		return mux.CodeUnreachable, fmt.Sprintf("cannot resolve %s: %v", dnsErr.Name, dnsErr.Err)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
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
	lns := append(f.lns, f.peerLns...)
	f.lns, f.peerLns = nil, nil
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

// Join copies between a client connection and a stream in both
// directions, passing half-closes along, until both directions are done
// or one fails; a failure resets the other side. It returns the bytes
// sent over the stream and received from it.
func Join(c net.Conn, s *mux.Stream) (up, down int64, err error) {
	var wg sync.WaitGroup
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		up, upErr = copyBuf(s, c)
		if upErr != nil {
			s.Reset(mux.CodeClosed, "client connection failed: "+upErr.Error())
			return
		}
		_ = s.CloseWrite()
	}()
	down, err = copyBuf(c, s)
	if err != nil {
		resetConn(c) // tell the client something went wrong
	} else if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		c.Close()
	}
	wg.Wait()
	c.Close()
	s.Close()
	if err == nil {
		err = upErr
	}
	return up, down, err
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBuf copies until EOF; unlike io.Copy it never hands the stream to a
// ReaderFrom/WriterTo, so each write is one scheduler-sized chunk.
func copyBuf(dst io.Writer, src io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// resetConn closes c so that its peer sees a reset, not a clean end.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

func portOf(a net.Addr) int {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.Port
	}
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}
