// Package mux carries many streams over one link: it opens, accepts,
// half-closes and resets streams, gives each its own credit-based flow
// control, and schedules what goes out so that control messages come
// first and streams take turns, a newly active stream ahead of bulk ones.
//
// A Mux is the link's upper layer (link.Upper): the link pulls outgoing
// bytes with Fill when the line can take a frame, and pushes received
// payloads with Deliver.
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

// Config tunes a Mux.
type Config struct {
	// StreamWindow is how much each stream may buffer on receipt; the
	// far end may send that much ahead of our reader. At least
	// InitialWindow.
	StreamWindow int
	// MaxStreams bounds the streams open at once (both directions).
	MaxStreams int
	// AcceptBacklog bounds inbound streams not yet taken by Accept.
	AcceptBacklog int
	// OnListen is called (in its own goroutine) when the far end asks
	// us to listen for it (a remote forward); its error goes back.
	OnListen func(ListenRequest) error
	// OnSessionEnd is called when the link's session ends, after every
	// stream of it was reset.
	OnSessionEnd func(reason error)
	// Logger receives the mux's logs; nil means slog.Default().
	Logger *slog.Logger
}

// ListenRequest is a far end's request that we listen for it (-R): a
// connection accepted there is carried back over a stream with Tag.
type ListenRequest struct {
	Network string // "tcp" or "udp"
	Bind    string // host:port to listen on
	Tag     uint64 // opaque to us; echoed in every stream's Info
}

// sparseLimit is the largest write that counts as interactive: a stream
// that becomes ready with no more than this goes to the head of the line.
const sparseLimit = 512

// Mux multiplexes streams over a link.
type Mux struct {
	cfg    Config
	log    *slog.Logger
	notify func()

	mu        sync.Mutex
	up        bool
	upCh      chan struct{} // closed while a session is up
	odd       bool          // our stream ids are odd
	nextID    uint32
	streams   map[uint32]*Stream
	ctrl      [][]byte // control messages waiting, in order
	ready     []*Stream
	outRest   []byte // the part of a message that did not fit the last payload
	inBuf     []byte // the beginning of a message cut by a payload's end
	accepts   chan *Stream
	listens   []ListenRequest // ours, sent again at each new session
	closed    bool
	sessionUp time.Time
}

// New makes a Mux. Attach it to a link with SetNotify before use.
func New(cfg Config) *Mux {
	if cfg.StreamWindow < InitialWindow {
		cfg.StreamWindow = InitialWindow
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = 65536
	}
	if cfg.AcceptBacklog == 0 {
		cfg.AcceptBacklog = 16384
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Mux{
		cfg:     cfg,
		log:     cfg.Logger,
		notify:  func() {},
		upCh:    make(chan struct{}),
		streams: make(map[uint32]*Stream),
		accepts: make(chan *Stream, cfg.AcceptBacklog),
	}
}

// SetNotify sets the function that wakes the link's sender (link.Notify).
func (m *Mux) SetNotify(f func()) { m.notify = f }

// ErrMuxClosed is returned by Open and Accept after Close.
var ErrMuxClosed = errors.New("mux closed")

// Open opens a stream described by info. It waits, within ctx, until a
// session is up. The stream may be written at once; WaitAccepted tells
// whether the far end reached the destination.
func (m *Mux) Open(ctx context.Context, info Info) (*Stream, error) {
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, ErrMuxClosed
		}
		if m.up {
			break
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
	if len(m.streams) >= m.cfg.MaxStreams {
		return nil, fmt.Errorf("too many streams (%d)", len(m.streams))
	}
	id := m.nextID
	for id == 0 || m.streams[id] != nil {
		id += 2
	}
	m.nextID = id + 2
	s := m.newStream(id, info, false)
	s.credit = InitialWindow
	m.queue(openMessage(id, info))
	m.grantExtra(s)
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
		target:   m.cfg.StreamWindow,
	}
	m.streams[id] = s
	return s
}

// grantExtra raises a new stream's receive window from InitialWindow to
// the configured size.
func (m *Mux) grantExtra(s *Stream) {
	if extra := s.target - InitialWindow; extra > 0 {
		s.recvLeft += extra
		m.queue(binary.AppendUvarint(header(nil, msgWindow, s.id), uint64(extra)))
	}
}

// Accept returns the next stream the far end opened. The caller decides
// where it goes, then calls Stream.Accept, or Stream.Reset with a reason.
func (m *Mux) Accept(ctx context.Context) (*Stream, error) {
	select {
	case s, ok := <-m.accepts:
		if !ok {
			return nil, ErrMuxClosed
		}
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ListenRemote asks the far end to listen for us, now and after every new
// session: each connection it accepts comes back as a stream with req.Tag.
// Results are logged.
func (m *Mux) ListenRemote(req ListenRequest) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.listens = append(m.listens, req)
	if m.up {
		m.queue(listenMessage(req))
	}
}

// UnlistenRemote forgets a remote listen request (from the next session
// on; the far end closes its listeners when the session ends).
func (m *Mux) UnlistenRemote(tag uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, l := range m.listens {
		if l.Tag == tag {
			m.listens = append(m.listens[:i], m.listens[i+1:]...)
			return
		}
	}
}

func listenMessage(req ListenRequest) []byte {
	var body []byte
	body = tlvString(body, tagNetwork, req.Network)
	body = tlvString(body, tagBind, req.Bind)
	body = tlvUint(body, tagTag, req.Tag)
	return withBody(header(nil, msgListen, 0), body)
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
		m.inBuf, m.outRest, m.ctrl = nil, nil, nil
		for _, req := range m.listens {
			m.queue(listenMessage(req))
		}
		m.sessionUp = time.Now()
	}
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
	m.inBuf, m.outRest, m.ctrl = nil, nil, nil
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
	}
	clear(m.streams)
	m.ready = m.ready[:0]
}

// fail marks s dead with err and wakes its users, under m.mu.
func (m *Mux) fail(s *Stream, err error) {
	if s.err == nil {
		s.err = err
	}
	if !s.accepted {
		s.accepted = true
		close(s.acceptCh)
	}
	s.wbuf = nil
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
		body := append([]byte{byte(code)}, binary.AppendUvarint(nil, uint64(len(reason)))...)
		body = append(body, reason...)
		m.queue(append(header(nil, msgReset, s.id), body...))
	}
	m.unready(s)
	delete(m.streams, s.id)
}

// maybeForget drops s from the table once both directions are done.
func (m *Mux) maybeForget(s *Stream) {
	if s.localFin && s.remoteFin && (s.closed || len(s.rbuf) == s.roff) && len(s.wbuf) == 0 {
		if m.streams[s.id] == s {
			delete(m.streams, s.id)
		}
	}
}

// queue appends a control message and wakes the link, under m.mu.
func (m *Mux) queue(msg []byte) {
	m.ctrl = append(m.ctrl, msg)
	m.notify()
}

// makeReady puts s in the send rotation, under m.mu: an interactive
// stream at the head, others at the tail.
func (m *Mux) makeReady(s *Stream, sparse bool) {
	if s.inReady || s.credit <= 0 || len(s.wbuf) == 0 {
		return
	}
	s.inReady = true
	if sparse {
		m.ready = append(m.ready, nil)
		copy(m.ready[1:], m.ready)
		m.ready[0] = s
	} else {
		m.ready = append(m.ready, s)
	}
	m.notify()
}

func (m *Mux) unready(s *Stream) {
	if !s.inReady {
		return
	}
	s.inReady = false
	for i, r := range m.ready {
		if r == s {
			m.ready = append(m.ready[:i], m.ready[i+1:]...)
			return
		}
	}
}

// maybeGrant returns read bytes to the far end as credit, under m.mu, in
// batches so that credit messages stay a small part of the traffic.
func (m *Mux) maybeGrant(s *Stream) {
	if s.err != nil || s.remoteFin || s.unreported == 0 {
		return
	}
	if s.unreported >= s.target/4 || (len(s.rbuf) == s.roff && s.unreported >= s.target/16) {
		s.recvLeft += s.unreported
		m.queue(binary.AppendUvarint(header(nil, msgWindow, s.id), uint64(s.unreported)))
		s.unreported = 0
	}
}

// Fill implements link.Upper: control messages first, then streams in
// turn, each up to a quantum, until p is full.
func (m *Mux) Fill(p []byte) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		return 0
	}
	n := 0
	if len(m.outRest) > 0 {
		c := copy(p, m.outRest)
		m.outRest = m.outRest[c:]
		n += c
		if len(m.outRest) > 0 {
			return n
		}
		m.outRest = nil
	}
	for len(m.ctrl) > 0 && n < len(p) {
		msg := m.ctrl[0]
		c := copy(p[n:], msg)
		n += c
		m.ctrl[0] = nil
		m.ctrl = m.ctrl[1:]
		if c < len(msg) {
			m.outRest = msg[c:]
			return n
		}
	}
	if len(m.ctrl) == 0 {
		m.ctrl = nil
	}
	quantum := max(1024, len(p)/4)
	for len(m.ready) > 0 && n < len(p) {
		s := m.ready[0]
		take := min(len(s.wbuf), s.credit, quantum)
		hdr := 1 + uvarintLen(uint64(s.id))
		room := len(p) - n - hdr - uvarintLen(uint64(take))
		if room <= 0 || (n > 0 && room < min(take, 32)) {
			break // a sliver would cost more in header than it carries
		}
		take = min(take, room)
		h := header(p[n:n], msgData, s.id)
		h = binary.AppendUvarint(h, uint64(take))
		n += len(h)
		n += copy(p[n:], s.wbuf[:take])
		s.wbuf = s.wbuf[take:]
		s.credit -= take
		s.bytesOut += uint64(take)
		m.ready = m.ready[1:]
		s.inReady = false
		if len(s.wbuf) == 0 {
			s.wbuf = nil
			signal(s.writeCh)
		} else if s.credit > 0 {
			s.inReady = true
			m.ready = append(m.ready, s)
		}
	}
	if len(m.ready) == 0 {
		m.ready = nil
	}
	return n
}

// Deliver implements link.Upper: it parses the messages in p, which may
// continue a message cut at the end of the previous payload.
func (m *Mux) Deliver(p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.inBuf) > 0 {
		m.inBuf = append(m.inBuf, p...)
		p = m.inBuf
	}
	for len(p) > 0 {
		msg, n, err := parseMessage(p)
		if errors.Is(err, errShort) {
			if len(p) > maxMessage+16 && p[0] != msgData {
				return protoErr("message too long")
			}
			m.inBuf = append(m.inBuf[:0:0], p...)
			return nil
		}
		if err != nil {
			return err
		}
		if err := m.handle(msg); err != nil {
			return err
		}
		p = p[n:]
	}
	m.inBuf = nil
	return nil
}

// handle acts on one message, under m.mu.
func (m *Mux) handle(msg message) error {
	if msg.typ == msgListen || msg.typ == msgListenResult {
		return m.handleListen(msg)
	}
	s := m.streams[msg.sid]
	switch msg.typ {
	case msgOpen:
		return m.handleOpen(msg)
	case msgData:
		if s == nil {
			return nil // reset here while the data was under way
		}
		if len(msg.body) > s.recvLeft {
			m.resetLocked(s, CodeProtocol, "peer sent beyond its credit", true)
			return nil
		}
		s.recvLeft -= len(msg.body)
		if s.closed || s.remoteFin {
			return nil
		}
		if s.roff > 0 && len(s.rbuf)+len(msg.body) > cap(s.rbuf) {
			s.rbuf = append(s.rbuf[:0], s.rbuf[s.roff:]...)
			s.roff = 0
		}
		s.rbuf = append(s.rbuf, msg.body...)
		s.bytesIn += uint64(len(msg.body))
		signal(s.readCh)
	case msgAccept:
		if s != nil && !s.accepted {
			s.accepted = true
			close(s.acceptCh)
		}
	case msgWindow:
		if s != nil {
			s.credit += int(msg.n)
			if len(s.wbuf) > 0 {
				m.makeReady(s, false)
			}
		}
	case msgFin:
		if s != nil {
			s.remoteFin = true
			signal(s.readCh)
			m.maybeForget(s)
		}
	case msgReset:
		if s != nil {
			m.fail(s, &ResetError{Code: ResetCode(msg.n), Reason: string(msg.body), Remote: true})
			m.unready(s)
			delete(m.streams, s.id)
		}
	}
	return nil
}

func (m *Mux) handleOpen(msg message) error {
	if msg.sid == 0 || (msg.sid%2 == 1) == m.odd {
		return protoErr("peer opened stream %d with our parity", msg.sid)
	}
	if m.streams[msg.sid] != nil {
		return protoErr("peer opened stream %d twice", msg.sid)
	}
	var info Info
	err := parseTLV(msg.body, func(tag byte, val []byte) error {
		var err error
		var v uint64
		switch tag {
		case tagNetwork:
			info.Network = string(val)
		case tagDest:
			info.Dest = string(val)
		case tagEntrance:
			v, err = tlvUvarint(val)
			info.Entrance = int(v)
		case tagClient:
			info.Client = string(val)
		case tagTag:
			info.Tag, err = tlvUvarint(val)
		case tagProto:
			info.Proto = string(val)
		}
		return err
	})
	if err != nil {
		return err
	}
	if info.Network == "" {
		info.Network = "tcp"
	}
	s := m.newStream(msg.sid, info, true)
	s.credit = InitialWindow
	if len(m.streams) > m.cfg.MaxStreams || m.closed {
		m.resetLocked(s, CodeLimit, fmt.Sprintf("too many streams at the far end (limit %d)", m.cfg.MaxStreams), true)
		return nil
	}
	select {
	case m.accepts <- s:
		m.grantExtra(s)
	default:
		m.resetLocked(s, CodeLimit, "far end is not accepting streams fast enough", true)
	}
	return nil
}

func (m *Mux) handleListen(msg message) error {
	var req ListenRequest
	var errText string
	err := parseTLV(msg.body, func(tag byte, val []byte) error {
		var err error
		switch tag {
		case tagNetwork:
			req.Network = string(val)
		case tagBind:
			req.Bind = string(val)
		case tagTag:
			req.Tag, err = tlvUvarint(val)
		case tagError:
			errText = string(val)
		}
		return err
	})
	if err != nil {
		return err
	}
	if msg.typ == msgListenResult {
		if errText != "" {
			m.log.Error("far end could not listen for our remote forward", "tag", req.Tag, "err", errText)
		} else {
			m.log.Info("far end listens for our remote forward", "tag", req.Tag, "bind", req.Bind)
		}
		return nil
	}
	go func() {
		var result error
		if m.cfg.OnListen == nil {
			result = errors.New("remote forwards are not allowed here")
		} else {
			result = m.cfg.OnListen(req)
		}
		var body []byte
		body = tlvString(body, tagNetwork, req.Network)
		body = tlvString(body, tagBind, req.Bind)
		body = tlvUint(body, tagTag, req.Tag)
		if result != nil {
			body = tlvString(body, tagError, result.Error())
		}
		m.mu.Lock()
		m.queue(withBody(header(nil, msgListenResult, 0), body))
		m.mu.Unlock()
	}()
	return nil
}

// Compile-time check that Mux fits under a link and Stream is a net.Conn.
var (
	_ link.Upper = (*Mux)(nil)
	_ net.Conn   = (*Stream)(nil)
)

// FormatID renders a stream id for logs.
func FormatID(id uint32) string { return strconv.FormatUint(uint64(id), 10) }
