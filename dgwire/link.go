package dgwire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

// Config tunes a Link.
type Config struct {
	// PackSize is the longest packet this end sends and accepts, header
	// included (DeleGate's PACKSIZE); 0 means PackSize (16384). A peer
	// that announces a longer one may send packets up to its own.
	PackSize int
	// Host is the host name this end gives in HELLO; empty means
	// os.Hostname.
	Host string
	// HandshakeTimeout bounds the HELLO exchange on one transport; 0
	// means 30 s.
	HandshakeTimeout time.Duration
	// KeepAlive is how long the tunnel may stay silent before an ECHO;
	// 0 means 30 s, negative none. A peer that has answered an ECHO
	// once and then stays silent for three of them is given up.
	KeepAlive time.Duration
	// MaxAgents bounds the connections (DeleGate's agents) open at once
	// over the tunnel, both ways; 0 means 250, the most the one-byte
	// agent ids of DeleGate allow.
	MaxAgents int
	// MaxHeld bounds what one connection of the peer may send beyond what
	// this end's reader has taken (the peer stops at about 4 PACKSIZE
	// unacknowledged); 0 means 16 PACKSIZE. A peer that sends more
	// breaks DeleGate's flow control: its connection is closed.
	MaxHeld int
	// Now is the clock of HELLO's time stamp; nil means time.Now.
	Now func() time.Time
	// Logger receives the link's logs; nil means slog.Default().
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.PackSize <= 0 {
		c.PackSize = PackSize
	}
	c.PackSize = max(min(c.PackSize, HeaderLen+0xFFFF), link.MinPayload+64)
	if c.Host == "" {
		c.Host, _ = os.Hostname()
		if c.Host == "" {
			c.Host = "sockmux"
		}
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 30 * time.Second
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.MaxAgents <= 0 || c.MaxAgents > maxAgentID-minAgentID+1 {
		c.MaxAgents = maxAgentID - minAgentID + 1
	}
	if c.MaxHeld <= 0 {
		c.MaxHeld = 16 * c.PackSize
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Our agent ids: DeleGate's are small integers and 0x00FF names none.
const (
	minAgentID = 2
	maxAgentID = 0xFE
)

// Stats are a Link's counters.
type Stats struct {
	PacketsOut, PacketsIn atomic.Uint64 // packets written and read
	BytesOut, BytesIn     atomic.Uint64 // bytes written to and read from transports
	PayloadOut, PayloadIn atomic.Uint64 // connections' bytes sent and received
	TransportOpens        atomic.Uint64
	Sessions              atomic.Uint64 // HELLO exchanges completed
	Up                    atomic.Bool
	UpSince               atomic.Int64 // unix nanoseconds of the last start of a session, while Up
}

// Link speaks DeleGate's SockMux 0.3 over a transport and carries a mux's
// streams as its agents: it sits where sockmux's link sits, under the
// same mux, translating the mux's messages to SockMux packets and back.
// A DeleGate peer has none of sockmux's integrity checks, resumption or
// authentication: each new transport is a new session.
type Link struct {
	drv link.Driver
	up  link.Upper
	cfg Config
	log *slog.Logger

	stats  Stats
	notify chan struct{}

	closeOnce sync.Once
	closing   chan struct{} // closed by Close
	done      chan struct{} // closed when Run returns
	ranOnce   atomic.Bool
	inSession atomic.Bool // a session runs (after its HELLO exchange)
}

// closeFlush bounds how long Close lets a session send its CLOSE packets.
const closeFlush = 2 * time.Second

// New makes a Link that opens drv and carries up (a *mux.Mux).
func New(drv link.Driver, up link.Upper, cfg Config) *Link {
	cfg.defaults()
	return &Link{drv: drv, up: up, cfg: cfg, log: cfg.Logger,
		notify: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{})}
}

// Notify wakes the writer: the mux has something to send.
func (l *Link) Notify() {
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// Stats returns the link's counters.
func (l *Link) Stats() *Stats { return &l.stats }

// Config returns the link's configuration, defaults filled in.
func (l *Link) Config() Config { return l.cfg }

// Close ends the link: the CLOSE packets of the streams the mux reset go
// out, waiting up to linger, and Run returns. The reason is logged; a
// DeleGate peer has no packet for it.
func (l *Link) Close(reason string, linger time.Duration) {
	l.closeOnce.Do(func() {
		l.log.Debug("closing the DeleGate tunnel", "reason", reason)
		close(l.closing)
	})
	if !l.ranOnce.Load() {
		return
	}
	t := time.NewTimer(max(linger, time.Millisecond))
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
	}
}

// Run opens the transport, again after every break, and carries the
// mux's streams over it until ctx ends or Close. It returns nil then.
func (l *Link) Run(ctx context.Context) error {
	l.ranOnce.Store(true)
	defer close(l.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.closing:
		case <-ctx.Done():
			return
		}
		if l.inSession.Load() {
			// The session's writer sends CLOSE for the connections
			// still open and ends the session; give it a moment.
			t := time.NewTimer(closeFlush)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		cancel()
	}()
	delay := 100 * time.Millisecond
	for {
		if ctx.Err() != nil {
			return nil
		}
		t, err := l.drv.Open(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.log.Warn("transport open failed", "transport", l.drv.String(), "err", err, "retry_in", delay)
			if !sleep(ctx, delay) {
				return nil
			}
			delay = min(2*delay, 5*time.Second)
			continue
		}
		l.stats.TransportOpens.Add(1)
		started, err := l.serve(ctx, t)
		if ctx.Err() != nil || errors.Is(err, errClosing) {
			return nil
		}
		crypt := errors.Is(err, ErrCrypt)
		switch {
		case crypt:
			l.log.Error("DeleGate peer refused", "transport", l.drv.String(), "err", err)
		case started:
			l.log.Warn("DeleGate tunnel lost; its connections are closed (a DeleGate peer cannot resume)", "transport", l.drv.String(), "err", err)
			delay = 100 * time.Millisecond
		default:
			l.log.Error("DeleGate handshake failed", "transport", l.drv.String(), "err", err, "retry_in", delay)
		}
		if !sleep(ctx, delay) {
			return nil
		}
		if !started || crypt {
			delay = min(2*delay, 5*time.Second)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var errClosing = errors.New("link closing")

// serve runs one transport: the handshake, then the session until the
// transport breaks. started reports whether the session started.
func (l *Link) serve(ctx context.Context, t io.ReadWriteCloser) (started bool, err error) {
	s := newSession(l, t)
	stop := context.AfterFunc(ctx, func() { t.Close() })
	defer stop()
	defer t.Close()
	if err := s.handshake(ctx); err != nil {
		return false, err
	}
	l.stats.Sessions.Add(1)
	l.stats.UpSince.Store(time.Now().UnixNano())
	l.stats.Up.Store(true)
	l.log.Info("DeleGate SockMux tunnel up", "transport", l.drv.String(), "peer", s.peerHello)
	l.up.SessionStart(link.SessionInfo{Local: 2, Peer: 1, MaxPayload: s.fillSize()})
	l.inSession.Store(true)
	err = s.run(ctx)
	l.inSession.Store(false)
	l.stats.Up.Store(false)
	l.up.SessionEnd(fmt.Errorf("DeleGate tunnel: %w", err))
	return true, err
}

// closingErr is what a session ends with when Close or ctx ended it.
func (l *Link) closingErr(ctx context.Context) error {
	select {
	case <-l.closing:
		return errClosing
	default:
	}
	return ctx.Err()
}

// Compile-time check: a Link carries a mux.
var _ link.Upper = (*mux.Mux)(nil)
