package mux

import (
	"fmt"
)

// ListenRequest is a far end's request that we listen for it (-R): a
// connection accepted there is carried back over a stream with Tag.
type ListenRequest struct {
	Network string // "tcp" or "udp"
	Bind    string // host:port to listen on
	Tag     uint64 // opaque to us; echoed in every stream's Info
}

// ListenRemote asks the far end to listen for us, now and after every new
// session: each connection it accepts comes back as a stream with req.Tag.
// Results are logged. A request whose fields would not fit a payload is
// refused.
func (m *Mux) ListenRemote(req ListenRequest) error {
	switch {
	case len(req.Bind) > maxAddrLen:
		return fmt.Errorf("listen address of %d bytes (at most %d)", len(req.Bind), maxAddrLen)
	case len(req.Network) > maxNameLen:
		return fmt.Errorf("network name of %d bytes (at most %d)", len(req.Network), maxNameLen)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.listens = append(m.listens, req)
	if m.up {
		m.queue(listenMessage(req))
	}
	return nil
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
	body = tlvString(body, tagError, clipText(why))
	if closing {
		body = tlvUint(body, tagClose, 1)
	}
	return withBody(header(nil, msgListenResult, 0), body)
}
