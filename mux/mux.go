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
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sockmux/sockmux/link"
)

// Config tunes a Mux.
type Config struct {
	// StreamWindow is the largest receive window of a stream: how much
	// the far end may send ahead of our reader. A stream starts with
	// InitialWindow, and its window doubles up to StreamWindow while its
	// sender runs short of credit and its reader keeps up, as far as
	// MaxBuffered allows. At least InitialWindow.
	StreamWindow int
	// MaxStreams bounds the streams open at once (both directions),
	// counting inbound streams the far end already ended but the
	// application has not yet accepted, reset or closed. 0 means
	// DefaultMaxStreams.
	MaxStreams int
	// MaxBuffered is the receive buffer budget of the link: the sum of the
	// receive windows of all streams (what the far end may send ahead of
	// our readers) never exceeds it. Each stream takes InitialWindow of it
	// when it opens and more as far as it goes up to StreamWindow; an open
	// that does not fit is refused (CodeLimit). 0 means DefaultMaxBuffered.
	MaxBuffered int
	// AcceptBacklog bounds inbound streams not yet taken by Accept; 0
	// means DefaultAcceptBacklog. It is never more than MaxStreams.
	AcceptBacklog int
	// MaxListens bounds the far end's listen requests (remote forwards)
	// served per session; 0 means DefaultMaxListens.
	MaxListens int
	// MaxReplyQueue bounds the bytes of answers to the far end's requests
	// (refusals of streams, listen results, resets for protocol errors)
	// waiting to be sent. A far end that makes them pile up beyond it,
	// sending requests faster than it takes the answers, breaks the
	// protocol and the session is abandoned. 0 means DefaultMaxReplyQueue.
	MaxReplyQueue int
	// OnListen is called (in its own goroutine) when the far end asks
	// us to listen for it (a remote forward); its error goes back.
	OnListen func(ListenRequest) error
	// OnUnlisten is called when the far end asks us to close the
	// listener it had us open with the request's Tag (it dropped that
	// remote forward); its error goes back. Calls of OnListen and
	// OnUnlisten are made one at a time, in the order the far end's
	// requests came.
	OnUnlisten func(ListenRequest) error
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

// Defaults of the limits in Config.
const (
	DefaultMaxStreams    = 4096
	DefaultMaxBuffered   = DefaultMaxStreams * InitialWindow // 256 MiB
	DefaultAcceptBacklog = 16384                             // capped at MaxStreams
	DefaultMaxListens    = 64
	DefaultMaxReplyQueue = 256 << 10
)

// sparseLimit is the largest write that counts as interactive: a stream
// that becomes ready with no more than this goes to the head of the line.
const sparseLimit = 512

// A small write counts as interactive while its stream's recent volume
// is low. Each stream has a bucket of sparseBucket bytes, refilled at
// sparseRate bytes a second, from which every write takes its size. An
// echo or a shell session (a few bytes every few milliseconds) never
// empties it, however close together its writes come. A stream that
// empties it, or writes more than sparseLimit at once, is bulk (batched
// with the rest) until its bucket is full again: half a second of
// writing less than the refill rate.
const (
	sparseBucket = 1024
	sparseRate   = 2048
)

// interactive reports whether a write of n bytes on s counts as
// interactive, and takes n from s's bucket, under m.mu.
func (s *Stream) interactive(n int, now time.Time) bool {
	if s.sparseAt.IsZero() {
		s.sparse = sparseBucket
	} else {
		s.sparse = min(sparseBucket, s.sparse+now.Sub(s.sparseAt).Seconds()*sparseRate)
	}
	s.sparseAt = now
	if s.bulky && s.sparse >= sparseBucket {
		s.bulky = false
	}
	ok := n <= sparseLimit && !s.bulky && s.sparse >= float64(n)
	s.sparse = max(0, s.sparse-float64(n))
	if !ok {
		s.bulky = true
	}
	return ok
}

// Mux multiplexes streams over a link.
type Mux struct {
	cfg    Config
	log    *slog.Logger
	notify func()

	mu          sync.Mutex
	up          bool
	upCh        chan struct{} // closed while a session is up
	odd         bool          // our stream ids are odd
	nextID      uint32
	streams     map[uint32]*Stream
	ctrl        []ctrlMsg // control messages waiting, in order
	ready       []*Stream
	outRest     []byte    // the part of a message that did not fit the last payload
	outRestOpen *Stream   // the stream outRest opens, if it is an OPEN
	fills       uint64    // Fill calls so far
	inflight    []uint32  // streams with data in the payload Fill returned last
	inflightCut bool      // that payload starts inside a message
	lastUrgent  time.Time // when a stream last became ready with interactive data
	inBuf       []byte    // the beginning of a message cut by a payload's end
	inSkip      uint64    // bytes still to skip of an oversize DATA message
	accepts     chan *Stream
	listens     []ListenRequest // ours, sent again at each new session
	closed      bool
	sessionUp   time.Time
	sessionGen  uint64 // bumped when a session ends

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

// New makes a Mux. Attach it to a link with SetNotify before use.
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
	m.reserved -= s.target
	if s.held && !s.decided {
		s.zombie = true
		m.zombies++
	}
}

// decide records that the application accepted, reset or closed s, under
// m.mu.
func (m *Mux) decide(s *Stream) {
	if s.decided {
		return
	}
	s.decided = true
	if s.zombie {
		s.zombie = false
		m.zombies--
	}
}

// Accept returns the next stream the far end opened. The caller decides
// where it goes, then calls Stream.Accept, or Stream.Reset with a reason.
//
// Streams the far end reset (or whose session ended) before they were
// taken are skipped. Every stream Accept returns counts against MaxStreams
// until the caller accepts, resets or closes it.
func (m *Mux) Accept(ctx context.Context) (*Stream, error) {
	for {
		select {
		case s, ok := <-m.accepts:
			if !ok {
				return nil, ErrMuxClosed
			}
			m.mu.Lock()
			dead := s.err != nil
			if !dead {
				s.held = true
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

// UnlistenRemote withdraws the remote listen request with tag: it is not
// sent again at new sessions, and while a session is up the far end is
// asked to close that listener now (a LISTEN with the close field). The
// far end's connections that were under way go on. It reports whether
// there was such a request.
func (m *Mux) UnlistenRemote(tag uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, l := range m.listens {
		if l.Tag == tag {
			m.listens = append(m.listens[:i], m.listens[i+1:]...)
			if m.up {
				m.queue(unlistenMessage(l))
			}
			return true
		}
	}
	return false
}

func listenMessage(req ListenRequest) []byte {
	var body []byte
	body = tlvString(body, tagNetwork, req.Network)
	body = tlvString(body, tagBind, req.Bind)
	body = tlvUint(body, tagTag, req.Tag)
	return withBody(header(nil, msgListen, 0), body)
}

// unlistenMessage asks the far end to close the listener of req.Tag. It
// carries the request's network and bind too, for the far end's logs.
func unlistenMessage(req ListenRequest) []byte {
	var body []byte
	body = tlvString(body, tagNetwork, req.Network)
	body = tlvString(body, tagBind, req.Bind)
	body = tlvUint(body, tagTag, req.Tag)
	body = tlvUint(body, tagClose, 1)
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
		m.inBuf, m.outRest, m.outRestOpen, m.ctrl, m.replyBytes, m.inSkip = nil, nil, nil, nil, 0, 0
		m.peerListen, m.peerTags = 0, nil
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
	m.inBuf, m.outRest, m.outRestOpen, m.ctrl, m.replyBytes, m.inSkip = nil, nil, nil, nil, 0, 0
	m.peerListen, m.peerTags = 0, nil
	m.sessionGen++
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
	if s.err == nil {
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
	b := append(header(nil, msgReset, id), byte(code))
	b = binary.AppendUvarint(b, uint64(len(reason)))
	return append(b, reason...)
}

// maybeForget drops s from the table once both directions are done.
func (m *Mux) maybeForget(s *Stream) {
	if s.localFin && s.remoteFin && (s.closed || len(s.rbuf) == s.roff) && len(s.wbuf) == 0 {
		m.forget(s)
	}
}

// queue appends a control message and wakes the link, under m.mu.
func (m *Mux) queue(msg []byte) {
	m.ctrl = append(m.ctrl, ctrlMsg{b: msg})
	m.notify()
}

// queueReply queues an answer to the far end's request, under m.mu.
func (m *Mux) queueReply(msg []byte) {
	m.ctrl = append(m.ctrl, ctrlMsg{b: msg, reply: true})
	m.replyBytes += len(msg)
	m.notify()
}

// makeReady puts s in the send rotation, under m.mu: an interactive
// stream at the head, others at the tail.
func (m *Mux) makeReady(s *Stream, sparse bool) {
	if s.inReady || s.credit <= 0 || len(s.wbuf) == 0 {
		return
	}
	s.inReady = true
	s.urgent = sparse
	if sparse {
		m.lastUrgent = time.Now()
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
		grant := s.unreported
		s.unreported = 0
		if s.starved && len(s.rbuf) == s.roff {
			// The window, not the reader, holds the stream back.
			grant += m.grow(s)
			s.starved = false
		}
		s.recvLeft += grant
		m.queue(binary.AppendUvarint(header(nil, msgWindow, s.id), uint64(grant)))
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
	// What FillUrgent may send ahead of this payload depends on what it
	// carries: nothing when it starts inside a message, no stream it
	// carries data of or opens.
	m.fills++
	m.inflight = m.inflight[:0]
	m.inflightCut = len(m.outRest) > 0
	if len(m.outRest) > 0 {
		c := copy(p, m.outRest)
		m.outRest = m.outRest[c:]
		n += c
		if len(m.outRest) > 0 {
			return n
		}
		m.outRest = nil
		if s := m.outRestOpen; s != nil {
			s.openFill = m.fills
			m.outRestOpen = nil
		}
	}
	for len(m.ctrl) > 0 && n < len(p) {
		msg := m.ctrl[0]
		c := copy(p[n:], msg.b)
		n += c
		if msg.reply {
			m.replyBytes -= len(msg.b)
		}
		m.ctrl[0] = ctrlMsg{}
		m.ctrl = m.ctrl[1:]
		if c < len(msg.b) {
			m.outRest = msg.b[c:]
			m.outRestOpen = msg.open
			return n
		}
		if msg.open != nil {
			msg.open.openFill = m.fills
		}
	}
	if len(m.ctrl) == 0 {
		m.ctrl = nil
	}
	// A payload that starts with interactive data carries only that (and
	// control): it goes out as a short frame of its own instead of
	// waiting, inside a full one, for bulk data to cross the line.
	urgentOnly := len(m.ready) > 0 && m.ready[0].urgent
	return m.fillData(p, n, urgentOnly, false)
}

// mayOvertake reports whether data of s may go ahead of the payload Fill
// returned last, under m.mu: the far end must know the stream by then
// (its OPEN went out in an earlier payload), and that payload must carry
// none of its data, so that its bytes stay in order.
func (m *Mux) mayOvertake(s *Stream) bool {
	if !s.inbound && (s.openFill == 0 || s.openFill >= m.fills) {
		return false
	}
	return !slices.Contains(m.inflight, s.id)
}

// fillData adds DATA messages to p[:n] from the streams in turn, each up
// to a quantum, and returns the new length, under m.mu. urgentOnly
// serves interactive streams only; ahead serves only those not in the
// payload in flight (see FillUrgent), and records none.
func (m *Mux) fillData(p []byte, n int, urgentOnly, ahead bool) int {
	quantum := max(1024, len(p)/4)
	for i := 0; i < len(m.ready) && n < len(p); {
		s := m.ready[i]
		if urgentOnly && !s.urgent {
			break
		}
		if ahead && !m.mayOvertake(s) {
			i++
			continue
		}
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
		if !ahead {
			m.inflight = append(m.inflight, s.id)
		}
		m.ready = slices.Delete(m.ready, i, i+1)
		s.inReady = false
		s.urgent = false
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

// Urgent implements link.Preempter: an interactive stream waits that
// FillUrgent could send ahead of the payload in flight.
func (m *Mux) Urgent() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up || m.inflightCut {
		return false
	}
	for _, s := range m.ready {
		if !s.urgent {
			return false
		}
		if m.mayOvertake(s) {
			return true
		}
	}
	return false
}

// interactiveSpell is how long after interactive data the link keeps its
// frames short.
const interactiveSpell = 3 * time.Second

// Interactive implements link.Preempter: interactive data went out
// lately.
func (m *Mux) Interactive() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Since(m.lastUrgent) < interactiveSpell
}

// FillUrgent implements link.Preempter: it fills p with interactive data
// that may overtake the payload most recently returned by Fill (the link
// sends that one again right after). Only whole DATA messages qualify, of
// streams the far end already knows and that payload carries no data of,
// and only when that payload starts on a message boundary, so the byte
// stream of messages stays intact and every stream's bytes stay in order.
func (m *Mux) FillUrgent(p []byte) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up || m.inflightCut {
		return 0
	}
	return m.fillData(p, 0, true, true)
}

// Deliver implements link.Upper: it parses the messages in p, which may
// continue a message cut at the end of the previous payload.
func (m *Mux) Deliver(p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inSkip > 0 {
		k := min(m.inSkip, uint64(len(p)))
		m.inSkip -= k
		p = p[k:]
	}
	buffered := len(m.inBuf) > 0
	if buffered {
		m.inBuf = append(m.inBuf, p...)
		p = m.inBuf
	}
	whole := len(p)
	for len(p) > 0 {
		// No credit we grant allows a longer DATA message, so none is
		// ever buffered whole beyond that: its stream is reset and its
		// body skipped as it arrives.
		msg, n, err := parseMessage(p, m.cfg.StreamWindow)
		if errors.Is(err, errOversize) {
			if s := m.streams[msg.sid]; s != nil {
				m.resetReply(s, CodeProtocol, "peer sent beyond its credit")
			}
			if rest := uint64(len(p) - n); rest < msg.n {
				m.inSkip = msg.n - rest
				m.inBuf = nil
				return nil
			}
			p = p[n+int(msg.n):]
			continue
		}
		if errors.Is(err, errShort) {
			switch {
			case buffered && len(p) == whole:
				// Still the same message: m.inBuf holds it.
			case buffered:
				m.inBuf = append(m.inBuf[:0], p...)
			default:
				m.inBuf = append([]byte(nil), p...)
			}
			return nil
		}
		if err != nil {
			return err
		}
		if err := m.handle(msg); err != nil {
			return err
		}
		if m.replyBytes > m.cfg.MaxReplyQueue {
			return protoErr("the peer's requests need %d bytes of answers it does not take (limit %d)", m.replyBytes, m.cfg.MaxReplyQueue)
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
			m.resetReply(s, CodeProtocol, "peer sent beyond its credit")
			return nil
		}
		s.recvLeft -= len(msg.body)
		if s.recvLeft < s.target/8 {
			s.starved = true // the sender is about to run out of credit
		}
		if s.closed || s.remoteFin {
			return nil
		}
		if len(s.rbuf)+len(msg.body) > cap(s.rbuf) {
			// Make room: compact, or grow within the stream's window,
			// which bounds what it may hold.
			live := s.rbuf[s.roff:]
			if need := len(live) + len(msg.body); need <= cap(s.rbuf) {
				s.rbuf = append(s.rbuf[:0], live...)
			} else {
				nb := make([]byte, len(live), min(max(2*need, 4096), s.target))
				copy(nb, live)
				s.rbuf = nb
			}
			s.roff = 0
		}
		s.rbuf = append(s.rbuf, msg.body...)
		s.bytesIn += uint64(len(msg.body))
		signal(s.readCh)
	case msgAccept:
		if s != nil && !s.inbound && !s.accepted {
			s.accepted = true
			close(s.acceptCh)
		}
	case msgWindow:
		if s != nil {
			// Saturate: a peer's grants must not overflow an int, even
			// where it has 32 bits.
			s.credit = int(min(uint64(s.credit)+msg.n, maxCredit))
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
			m.forget(s)
		}
	}
	return nil
}

// maxCredit caps a stream's send credit.
const maxCredit = 1<<31 - 1

// resetReply resets s because of what the far end did, under m.mu; the
// RESET counts as an answer (MaxReplyQueue).
func (m *Mux) resetReply(s *Stream, code ResetCode, reason string) {
	m.resetLocked(s, code, reason, false)
	m.queueReply(resetMessage(s.id, code, reason))
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
	// Limits: the stream is refused before anything is made for it.
	var refuse string
	switch {
	case m.closed:
		refuse = "far end shutting down"
	case len(m.streams)+m.zombies >= m.cfg.MaxStreams:
		refuse = "far end stream limit " + strconv.Itoa(m.cfg.MaxStreams)
	case m.reserved+InitialWindow > m.cfg.MaxBuffered:
		refuse = "far end buffer limit"
	case len(m.accepts) >= cap(m.accepts):
		refuse = "far end accept backlog full"
	}
	if refuse != "" {
		m.queueReply(resetMessage(msg.sid, CodeLimit, refuse))
		return nil
	}
	s := m.newStream(msg.sid, info, true)
	s.credit = InitialWindow
	m.accepts <- s // room checked above, under m.mu
	return nil
}

func (m *Mux) handleListen(msg message) error {
	var req ListenRequest
	var errText string
	var closing uint64
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
		case tagClose:
			closing, err = tlvUvarint(val)
		}
		return err
	})
	if err != nil {
		return err
	}
	if msg.typ == msgListenResult {
		switch {
		case closing != 0 && errText != "":
			m.log.Warn("far end could not close the listener of a removed remote forward", "tag", req.Tag, "bind", req.Bind, "err", errText)
		case closing != 0:
			m.log.Info("far end closed the listener of a removed remote forward", "tag", req.Tag, "bind", req.Bind)
		case !m.listening(req.Tag):
			// A removed forward's listen request was answered, or a far
			// end that predates the close field answered the close
			// request as a listen request.
			m.log.Info("far end answered a listen request of a removed remote forward", "tag", req.Tag, "bind", req.Bind, "err", errText)
		case errText != "":
			m.log.Error("far end could not listen for our remote forward", "tag", req.Tag, "err", errText)
		default:
			m.log.Info("far end listens for our remote forward", "tag", req.Tag, "bind", req.Bind)
		}
		return nil
	}
	if closing != 0 {
		return m.handleUnlisten(req)
	}
	if m.cfg.OnListen == nil || m.peerListen >= m.cfg.MaxListens || len(m.listenOps) >= 2*m.cfg.MaxListens {
		why := "remote forwards are not allowed here"
		if m.cfg.OnListen != nil {
			why = fmt.Sprintf("too many remote forwards (limit %d)", m.cfg.MaxListens)
		}
		m.queueReply(listenResult(req, why, false))
		return nil
	}
	// Served in a goroutine (listening may take a while), one request at
	// a time and in order, so that a close and a listen on the same port
	// that follow each other are done in that order; at most MaxListens
	// listeners per session.
	m.peerListen++
	if m.peerTags == nil {
		m.peerTags = make(map[uint64]bool)
	}
	m.peerTags[req.Tag] = true
	m.listenOp(func() error { return m.cfg.OnListen(req) }, req, false)
	return nil
}

// handleUnlisten serves the far end's request to close the listener it
// had us open with req.Tag, under m.mu.
func (m *Mux) handleUnlisten(req ListenRequest) error {
	if m.cfg.OnUnlisten == nil || !m.peerTags[req.Tag] || len(m.listenOps) >= 2*m.cfg.MaxListens {
		why := fmt.Sprintf("no listener for remote forward tag %d", req.Tag)
		if m.cfg.OnUnlisten == nil {
			why = "closing remote forwards is not supported here"
		}
		m.queueReply(listenResult(req, why, true))
		return nil
	}
	delete(m.peerTags, req.Tag)
	m.peerListen--
	m.listenOp(func() error { return m.cfg.OnUnlisten(req) }, req, true)
	return nil
}

// listening reports whether tag is one of our listen requests, under m.mu.
func (m *Mux) listening(tag uint64) bool {
	for _, l := range m.listens {
		if l.Tag == tag {
			return true
		}
	}
	return false
}

// listenOp queues op, one of the far end's listen or close requests, to
// run after those before it, and answers req with its result unless the
// session ended meanwhile. Under m.mu.
func (m *Mux) listenOp(op func() error, req ListenRequest, closing bool) {
	gen := m.sessionGen
	m.listenOps = append(m.listenOps, func() {
		m.mu.Lock()
		stale := m.sessionGen != gen
		m.mu.Unlock()
		if stale {
			return // the session that asked is gone, and its listeners with it
		}
		why := ""
		err := op()
		if err != nil {
			why = err.Error()
		}
		m.mu.Lock()
		stale = m.sessionGen != gen
		if !stale {
			m.queueReply(listenResult(req, why, closing))
		}
		m.mu.Unlock()
		if stale && !closing && err == nil && m.cfg.OnUnlisten != nil {
			// The session ended while the listener opened: OnSessionEnd
			// may have run before it existed. Close it now, before any
			// request of the next session runs.
			_ = m.cfg.OnUnlisten(req)
		}
	})
	if !m.listenBusy {
		m.listenBusy = true
		go m.runListenOps()
	}
}

// runListenOps runs the queued listen and close requests in order.
func (m *Mux) runListenOps() {
	for {
		m.mu.Lock()
		if len(m.listenOps) == 0 {
			m.listenBusy = false
			m.mu.Unlock()
			return
		}
		op := m.listenOps[0]
		m.listenOps[0] = nil
		m.listenOps = m.listenOps[1:]
		m.mu.Unlock()
		op()
	}
}

// listenResult answers a LISTEN; why is empty on success.
func listenResult(req ListenRequest, why string, closing bool) []byte {
	var body []byte
	body = tlvString(body, tagNetwork, req.Network)
	body = tlvString(body, tagBind, req.Bind)
	body = tlvUint(body, tagTag, req.Tag)
	body = tlvString(body, tagError, why)
	if closing {
		body = tlvUint(body, tagClose, 1)
	}
	return withBody(header(nil, msgListenResult, 0), body)
}

// Compile-time check that Mux fits under a link and Stream is a net.Conn.
var (
	_ link.Upper = (*Mux)(nil)
	_ net.Conn   = (*Stream)(nil)
)

// FormatID renders a stream id for logs.
func FormatID(id uint32) string { return strconv.FormatUint(uint64(id), 10) }
