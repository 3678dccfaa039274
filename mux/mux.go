package mux

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/sockmux/sockmux/link"
)

// Mux multiplexes streams over a link.
type Mux struct {
	cfg    Config
	log    *slog.Logger
	notify func()

	mu         sync.Mutex
	up         bool
	gone       error         // why the last session was given up (a *link.GoneError), until the next one starts
	upCh       chan struct{} // closed while a session is up
	odd        bool          // our stream ids are odd
	nextID     uint32
	streams    map[uint32]*Stream
	ctrl       []ctrlMsg // control messages waiting, in order
	ready      []*Stream
	talkers    []*Stream // streams whose data went out as interactive, while they may send more (talking); Stream.talkerAt indexes it
	fills      uint64    // Fill calls so far
	inflight   []uint32  // streams with data in the payload Fill returned last
	accepts    chan *Stream
	listens    []ListenRequest // ours, sent again at each new session
	closed     bool
	sessionUp  time.Time
	sessionGen uint64 // bumped when a session ends

	// Limits, see Config.
	reserved   int             // the receive windows of the streams in the table
	zombies    int             // inbound streams gone from the table, undecided by the application
	replyBytes int             // bytes of answers to the far end in ctrl
	peerListen int             // listen requests of the far end served this session
	peerTags   map[uint64]bool // tags of those requests, while their listeners may be open
	listenOps  []func()        // the far end's listen and close requests waiting, in order
	listenBusy bool            // a goroutine is running listenOps
}

// ctrlMsg is a control message waiting to be sent; reply marks an answer
// to the far end's request, which counts against MaxReplyQueue.
type ctrlMsg struct {
	b     []byte
	reply bool
	open  *Stream // the stream this message opens
}

// New makes a Mux. Give it the link's Notify in cfg.Notify, and the mux to
// the link as its Upper (package endpoint does both). New does not verify
// cfg (Config.Verify does; endpoint.New calls it): a zero or negative
// limit takes its default, a StreamWindow below InitialWindow is raised to
// it, and AcceptBacklog is capped at MaxStreams.
func New(cfg Config) *Mux {
	if cfg.StreamWindow < InitialWindow {
		cfg.StreamWindow = InitialWindow
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = DefaultMaxBuffered
	}
	if cfg.AcceptBacklog <= 0 {
		cfg.AcceptBacklog = DefaultAcceptBacklog
	}
	cfg.AcceptBacklog = min(cfg.AcceptBacklog, cfg.MaxStreams)
	if cfg.MaxListens <= 0 {
		cfg.MaxListens = DefaultMaxListens
	}
	if cfg.MaxReplyQueue <= 0 {
		cfg.MaxReplyQueue = DefaultMaxReplyQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	notify := cfg.Notify
	if notify == nil {
		notify = func() {}
	}
	return &Mux{
		cfg:     cfg,
		log:     cfg.Logger,
		notify:  notify,
		upCh:    make(chan struct{}),
		streams: make(map[uint32]*Stream),
		accepts: make(chan *Stream, cfg.AcceptBacklog),
	}
}

// ErrMuxClosed is returned by Open and Accept after Close.
var ErrMuxClosed = errors.New("mux closed")

// Open opens a stream described by info. It waits, within ctx, until a
// session is up. The stream may be written at once; WaitAccepted tells
// whether the far end reached the destination.
func (m *Mux) Open(ctx context.Context, info Info) (*Stream, error) {
	if err := info.check(); err != nil {
		return nil, err
	}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, ErrMuxClosed
		}
		if m.up {
			break
		}
		if m.gone != nil {
			err := m.gone
			m.mu.Unlock()
			return nil, fmt.Errorf("link down: %w", err)
		}
		upCh := m.upCh
		m.mu.Unlock()
		select {
		case <-upCh:
		case <-ctx.Done():
			return nil, fmt.Errorf("link not up: %w", ctx.Err())
		}
	}
	defer m.mu.Unlock()
	if len(m.streams)+m.zombies >= m.cfg.MaxStreams {
		return nil, fmt.Errorf("too many streams (limit %d)", m.cfg.MaxStreams)
	}
	if m.reserved+InitialWindow > m.cfg.MaxBuffered {
		return nil, fmt.Errorf("receive buffer budget of %d bytes taken by %d streams", m.cfg.MaxBuffered, len(m.streams))
	}
	id := m.nextID
	for id == 0 || m.streams[id] != nil {
		id += 2
	}
	m.nextID = id + 2
	s := m.newStream(id, info, false)
	s.credit = InitialWindow
	m.ctrl = append(m.ctrl, ctrlMsg{b: openMessage(id, info), open: s})
	m.notify()
	return s, nil
}

func openMessage(id uint32, info Info) []byte {
	var body []byte
	body = tlvString(body, tagNetwork, info.Network)
	body = tlvString(body, tagDest, info.Dest)
	if info.Entrance != 0 {
		body = tlvUint(body, tagEntrance, uint64(info.Entrance))
	}
	body = tlvString(body, tagClient, info.Client)
	if info.Tag != 0 {
		body = tlvUint(body, tagTag, info.Tag)
	}
	body = tlvString(body, tagProto, info.Proto)
	body = tlvString(body, tagService, info.Service)
	return withBody(header(nil, msgOpen, id), body)
}

func (m *Mux) newStream(id uint32, info Info, inbound bool) *Stream {
	s := &Stream{
		m:        m,
		id:       id,
		info:     info,
		inbound:  inbound,
		created:  time.Now(),
		acceptCh: make(chan struct{}),
		readCh:   make(chan struct{}, 1),
		writeCh:  make(chan struct{}, 1),
		recvLeft: InitialWindow,
		target:   InitialWindow,
	}
	m.streams[id] = s
	m.reserved += s.target
	return s
}

// growHeadroom is how many new streams' initial windows the budget keeps
// free when a stream's window grows.
const growHeadroom = 64

// grow doubles s's receive window, up to StreamWindow and as far as the
// budget allows while it keeps room for new streams, under m.mu. It
// returns by how much; the caller grants it.
func (m *Mux) grow(s *Stream) int {
	room := m.cfg.MaxBuffered - m.reserved -
		max(0, min(m.cfg.MaxStreams-len(m.streams)-m.zombies, growHeadroom))*InitialWindow
	g := min(s.target, m.cfg.StreamWindow-s.target, room)
	if g <= 0 {
		return 0
	}
	s.target += g
	m.reserved += g
	return g
}

// forget drops s from the table, under m.mu: its receive window returns
// to the budget (its buffer is empty or dropped by now), and an inbound
// stream the application holds without having decided on it stays
// counted against MaxStreams until it does.
func (m *Mux) forget(s *Stream) {
	if m.streams[s.id] != s {
		return
	}
	delete(m.streams, s.id)
	m.dropTalker(s)
	m.reserved -= s.target
	m.orphan(s)
}

// AcceptStream returns the next stream the far end opened. The caller
// decides where it goes, then answers the opener: Stream.Accept (the ACCEPT
// message: it reached its destination) or Stream.Reset with a reason.
//
// Streams the far end reset (or whose session ended) before they were
// taken are skipped. Every stream AcceptStream returns counts against
// MaxStreams until the caller accepts, resets or closes it.
func (m *Mux) AcceptStream(ctx context.Context) (*Stream, error) {
	for {
		select {
		case s, ok := <-m.accepts:
			if !ok {
				return nil, ErrMuxClosed
			}
			m.mu.Lock()
			dead := s.state == stateReset
			if !dead {
				m.hold(s)
			}
			m.mu.Unlock()
			if dead {
				continue
			}
			return s, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Streams returns the open streams.
func (m *Mux) Streams() []*Stream {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Stream, 0, len(m.streams))
	for _, s := range m.streams {
		out = append(out, s)
	}
	return out
}

// NumStreams returns how many streams are open.
func (m *Mux) NumStreams() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.streams)
}

// Up reports whether a session is up; the channel is closed while it is.
func (m *Mux) Up() (bool, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.up, m.upCh
}

// Close resets every stream and stops Accept.
func (m *Mux) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	m.endStreams(&ResetError{Code: CodeClosed, Reason: "sockmux shutting down"})
	close(m.accepts)
}

// SessionStart implements link.Upper.
func (m *Mux) SessionStart(s link.SessionInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !s.Resumed {
		m.odd = s.Local > s.Peer
		m.nextID = 2
		if m.odd {
			m.nextID = 1
		}
		m.ctrl, m.replyBytes = nil, 0
		m.peerListen, m.peerTags = 0, nil
		for _, req := range m.listens {
			m.queue(listenMessage(req))
		}
		m.sessionUp = time.Now()
	}
	m.gone = nil
	if !m.up {
		m.up = true
		close(m.upCh)
	}
}

// SessionEnd implements link.Upper: every stream of the session is reset.
func (m *Mux) SessionEnd(reason error) {
	m.mu.Lock()
	why := "link session ended"
	if reason != nil {
		why = "link session ended: " + reason.Error()
	}
	m.endStreams(&ResetError{Code: CodeSessionEnded, Reason: why, Remote: true})
	m.ctrl, m.replyBytes = nil, 0
	m.peerListen, m.peerTags = 0, nil
	m.sessionGen++
	if gone := (*link.GoneError)(nil); errors.As(reason, &gone) {
		m.gone = reason // until the next session: turn new streams away at once
	}
	if m.up {
		m.up = false
		m.upCh = make(chan struct{})
	}
	m.mu.Unlock()
	if m.cfg.OnSessionEnd != nil {
		m.cfg.OnSessionEnd(reason)
	}
}

// endStreams fails every stream with err, under m.mu.
func (m *Mux) endStreams(err error) {
	for _, s := range m.streams {
		m.fail(s, err)
		m.forget(s)
	}
	m.ready = m.ready[:0]
}

// fail marks s dead with err and wakes its users, under m.mu. What it had
// received and not yet been read is dropped, as TCP drops it on a reset:
// its reader gets the reset error at once.
func (m *Mux) fail(s *Stream, err error) {
	if s.apply(evReset) {
		s.err = err
	}
	if !s.accepted {
		s.accepted = true
		close(s.acceptCh)
	}
	s.wbuf = nil
	s.rbuf, s.roff = nil, 0
	s.inReady = false
	signal(s.readCh)
	signal(s.writeCh)
}

// resetLocked resets s and, if tell, sends RESET to the far end.
func (m *Mux) resetLocked(s *Stream, code ResetCode, reason string, tell bool) {
	if s.err != nil {
		return
	}
	m.fail(s, &ResetError{Code: code, Reason: reason})
	if tell {
		m.queue(resetMessage(s.id, code, reason))
	}
	m.unready(s)
	m.forget(s)
}

func resetMessage(id uint32, code ResetCode, reason string) []byte {
	reason = clipText(reason)
	b := append(header(nil, msgReset, id), byte(code))
	b = binary.AppendUvarint(b, uint64(len(reason)))
	return append(b, reason...)
}

// maybeForget drops s from the table once both directions are done.
func (m *Mux) maybeForget(s *Stream) {
	if s.state == stateFinished && (s.closed || len(s.rbuf) == s.roff) && len(s.wbuf) == 0 {
		m.forget(s)
	}
}

// Compile-time check that Mux fits under a link and Stream is a net.Conn.
var (
	_ link.Upper = (*Mux)(nil)
	_ net.Conn   = (*Stream)(nil)
)

// FormatID renders a stream id for logs.
func FormatID(id uint32) string { return strconv.FormatUint(uint64(id), 10) }
