package mux

import (
	"errors"
	"strconv"
)

// Deliver implements link.Upper: it acts on the messages in p, which holds
// whole messages only (Fill never cuts one across payloads).
func (m *Mux) Deliver(p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(p) > 0 {
		msg, n, err := parseMessage(p, m.cfg.StreamWindow)
		if errors.Is(err, errOversize) {
			// No credit we grant allows a DATA message this long: its
			// stream is reset and the message skipped.
			if uint64(len(p)-n) < msg.n {
				return protoErr("a DATA message of %d bytes runs past the end of its payload", msg.n)
			}
			if s := m.streams[msg.sid]; s != nil {
				m.resetReply(s, CodeProtocol, "peer sent beyond its credit")
			}
			p = p[n+int(msg.n):]
			continue
		}
		if errors.Is(err, errShort) {
			return protoErr("a message runs past the end of its payload (%d bytes left, type 0x%02x)", len(p), p[0])
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
		if s.closed || s.state.remoteDone() {
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
			s.apply(evRemoteFin)
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
		case tagService:
			info.Service = string(val)
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
