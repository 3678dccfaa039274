package dgwire

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/sockmux/sockmux/mux"
)

// translate turns the mux's messages of one payload into packets.
func (s *session) translate(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return mux.ParseMsgs(p, s.fromMux)
}

// fromMux acts on one message of the mux's, under s.mu.
func (s *session) fromMux(m mux.Msg) error {
	if m.Type == mux.MsgListen {
		why := "a DeleGate peer cannot listen for this end (-R): give it PORT= and SERVER=...,-in rules instead"
		s.deliver(mux.AppendListenResult(nil, m.Listen, why, m.Close))
		return nil
	}
	if m.Type == mux.MsgOpen {
		s.open(m)
		return nil
	}
	a := s.bySid[m.Stream]
	if a == nil {
		return nil // its agent is gone
	}
	switch m.Type {
	case mux.MsgData:
		switch {
		case a.muxDone || a.state == stPeerClosed || a.state == stClosing:
			// The peer closed: DeleGate has no half-close. The bytes
			// go nowhere; their credit goes back so the writer is not
			// held up.
			s.deliver(mux.AppendWindow(nil, a.sid, uint64(len(m.Data))))
		case a.state == stConnOut && s.connA == a && s.connEnd == len(s.out) && s.connData && len(a.pending) == 0 &&
			len(s.out)-s.connAt+len(m.Data) <= s.sendPack():
			// Initial data in the CONNECT just queued, as DeleGate sends
			// it. No SENT acknowledges it: its credit goes back now.
			s.out = append(s.out, m.Data...)
			binary.BigEndian.PutUint16(s.out[s.connAt+6:], uint16(len(s.out)-s.connAt-HeaderLen))
			s.connEnd = len(s.out)
			s.l.stats.PayloadOut.Add(uint64(len(m.Data)))
			s.deliver(mux.AppendWindow(nil, a.sid, uint64(len(m.Data))))
		case a.state == stConnOut || a.state == stConnIn:
			// Behind what waits, nothing more goes into the CONNECT.
			a.pending = append(a.pending, m.Data...)
		default:
			s.sendData(a, m.Data)
		}
	case mux.MsgWindow:
		s.granted(a, int(min(m.N, 1<<30)))
	case mux.MsgAccept:
		if a.state == stConnIn {
			a.state = stOpen
			txt := ConnectText{BufSize: BufSize, From: "0.0.0.0:0", To: "0.0.0.0:0"}
			s.send(Packet{Type: TypeCONNECTED, Said: a.ours, Raid: a.peer, Data: withNUL(txt.String())})
			s.flushPending(a)
		}
	case mux.MsgFin:
		a.muxDone = true
		switch a.state {
		case stConnOut:
			a.finAfter = true
		case stConnIn, stOpen:
			s.flushPending(a)
			s.sendClose(a)
		}
		s.maybeForget(a)
	case mux.MsgReset:
		a.muxDone, a.inDone = true, true
		a.held, a.pending, a.runs = nil, nil, nil
		switch a.state {
		case stConnOut:
			a.resetAfter = true
		case stConnIn, stOpen:
			s.sendClose(a)
		}
		s.maybeForget(a)
	}
	return nil
}

// open sends CONNECT for a stream the mux opens, under s.mu.
func (s *session) open(m mux.Msg) {
	refuse := func(code mux.ResetCode, why string) {
		s.deliver(mux.AppendReset(nil, m.Stream, code, why))
	}
	switch {
	case m.Info.Service != "":
		refuse(mux.CodeNoRoute, "a DeleGate peer serves no sockmux service "+strconv.Quote(m.Info.Service))
		return
	case m.Info.Network == "udp":
		refuse(mux.CodeDenied, "sockmux carries only TCP over a DeleGate tunnel")
		return
	}
	a := s.newAgent()
	if a == nil {
		refuse(mux.CodeLimit, fmt.Sprintf("%d connections are open over the DeleGate tunnel (the limit)", s.l.cfg.MaxAgents))
		return
	}
	if m.Info.Dest != "" && !s.warnDest {
		s.warnDest = true
		s.log.Warn("a DeleGate peer is not told the destination a forward asks for: it routes by the entrance port alone (its SERVER=...,-in:-:-Pport)",
			"dest", m.Info.Dest, "entrance", m.Info.Entrance)
	}
	a.sid, a.state, a.entrance = m.Stream, stConnOut, m.Info.Entrance
	s.bySid[a.sid] = a
	client := m.Info.Client
	if client == "" {
		client = "0.0.0.0:0"
	}
	txt := ConnectText{BufSize: BufSize, From: client, To: "0.0.0.0:" + strconv.Itoa(m.Info.Entrance)}
	s.send(Packet{Type: TypeCONNECT, Said: a.ours, Raid: NoAgent, Data: withNUL(txt.String())})
	s.connA, s.connAt, s.connEnd = a, len(s.out)-HeaderLen-len(txt.String())-1, len(s.out)
}

// flushPending sends what the mux wrote before the connection was made,
// under s.mu.
func (s *session) flushPending(a *agent) {
	if len(a.pending) > 0 {
		s.sendData(a, a.pending)
		a.pending = nil
	}
}

// granted acts on the mux's credit for a: n bytes were read there.
// Those that came in SEND are acknowledged with SENT; the data held
// back for want of credit goes in. Under s.mu.
func (s *session) granted(a *agent, n int) {
	a.credit += n
	acked := 0
	for n > 0 && len(a.runs) > 0 {
		r := &a.runs[0]
		k := min(n, r.n)
		if r.acked {
			acked += k
		}
		r.n -= k
		n -= k
		if r.n == 0 {
			a.runs = a.runs[1:]
		}
	}
	if acked > 0 && !a.peerDone && a.peer != NoAgent {
		s.send(Packet{Type: TypeSENT, Said: a.ours, Raid: a.peer, Data: CountData(acked)})
	}
	s.flushHeld(a)
}

// flushHeld delivers held data as far as the credit allows, then the
// FIN that waits behind it, under s.mu.
func (s *session) flushHeld(a *agent) {
	if a.inDone {
		return
	}
	if k := min(a.credit, len(a.held)); k > 0 {
		s.deliver(mux.AppendData(nil, a.sid, a.held[:k]))
		a.credit -= k
		a.held = a.held[k:]
		if len(a.held) == 0 {
			a.held = nil
		}
	}
	if a.finHeld && len(a.held) == 0 {
		s.deliver(mux.AppendFin(nil, a.sid))
		a.inDone = true
		s.maybeForget(a)
	}
}

// inbound takes data of the peer's for a; acked tells whether a SENT is
// owed once it is read. Under s.mu.
func (s *session) inbound(a *agent, data []byte, acked bool) {
	if a.inDone || len(data) == 0 {
		return
	}
	s.l.stats.PayloadIn.Add(uint64(len(data)))
	if n := len(a.runs); n > 0 && a.runs[n-1].acked == acked {
		a.runs[n-1].n += len(data)
	} else {
		a.runs = append(a.runs, run{n: len(data), acked: acked})
	}
	if len(a.held)+len(data) > s.l.cfg.MaxHeld {
		s.log.Error("the DeleGate peer sends beyond its flow control (about 4 PACKSIZE unacknowledged); closing its connection",
			"agent", a.ours, "held", len(a.held)+len(data), "limit", s.l.cfg.MaxHeld)
		s.deliver(mux.AppendReset(nil, a.sid, mux.CodeProtocol, "the DeleGate peer sent beyond its flow control"))
		a.inDone, a.muxDone, a.held, a.runs = true, true, nil, nil
		if a.state != stPeerClosed && a.state != stClosing && a.peer != NoAgent {
			s.sendClose(a)
		}
		s.maybeForget(a)
		return
	}
	a.held = append(a.held, data...)
	s.flushHeld(a)
}

// handle acts on one packet of the peer's after the handshake.
func (s *session) handle(p Packet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p.Type {
	case TypeNOOP, TypeHELLOOK, TypeSENTOOB:
		return nil // a HELLOOK answering ours comes after the exchange ended
	case TypeHELLO:
		s.restarted(p)
		return nil
	case TypeSETOPT:
		return s.setopt(p)
	case TypeCRYPTON:
		return ErrCrypt
	case TypeECHO:
		s.send(Packet{Type: TypeECHOED, Said: p.Raid, Raid: p.Said, Data: append([]byte(nil), p.Data...)})
		return nil
	case TypeECHOED:
		s.echoed.Store(true)
		return nil
	case TypeCONNECT:
		s.connect(p)
		return nil
	}
	if !known(p.Type) {
		s.unknown++
		if s.unknown > maxUnknown {
			return fmt.Errorf("the DeleGate peer sent %d packets of unknown types (the last 0x%02x, %d bytes): it does not speak SockMux 0.3", s.unknown, p.Type, len(p.Data))
		}
		s.log.Warn("the DeleGate peer sent a packet of an unknown type; skipped", "type", fmt.Sprintf("0x%02x", p.Type), "len", len(p.Data))
		return nil
	}
	a := s.agents[p.Raid]
	if a == nil || a.peerDone {
		return nil // a connection that closed while the packet was under way
	}
	if a.peer != NoAgent && p.Type != TypeCONNECTED && p.Said != a.peer {
		s.log.Debug("packet for an agent from another agent of the peer's; ignored", "type", TypeName(p.Type), "said", p.Said, "agent", a.ours)
		return nil
	}
	switch p.Type {
	case TypeCONNECTED:
		if a.state != stConnOut {
			return nil
		}
		a.peer, a.state = p.Said, stOpen
		_, initial := Text(p.Data)
		s.deliver(mux.AppendAccept(nil, a.sid))
		switch {
		case a.resetAfter:
			s.sendClose(a)
		default:
			s.inbound(a, initial, false)
			s.flushPending(a)
			if a.finAfter {
				s.sendClose(a)
			}
		}
	case TypeSEND, TypeSENDOOB:
		if p.Type == TypeSENDOOB {
			s.send(Packet{Type: TypeSENTOOB, Said: a.ours, Raid: a.peer, Data: CountData(len(p.Data))})
		}
		if !a.muxDone || a.state == stClosing {
			s.inbound(a, p.Data, p.Type == TypeSEND)
		}
	case TypeSENT:
		n, err := ParseCount(p.Data)
		if err != nil {
			return err
		}
		n = min(n, a.sentOut)
		a.sentOut -= n
		if n > 0 && !a.muxDone {
			s.deliver(mux.AppendWindow(nil, a.sid, uint64(n)))
		}
	case TypeCLOSE:
		a.peerDone = true
		switch a.state {
		case stConnOut:
			why := fmt.Sprintf("the DeleGate peer closed the connection at once: it has no SERVER=...,-in for entrance port %d, or its server refused", a.entrance)
			s.log.Warn("DeleGate peer refused a connection", "agent", a.ours, "entrance", a.entrance)
			s.send(Packet{Type: TypeCLOSED, Said: a.ours, Raid: p.Said, Data: withNUL(closedText)})
			if !a.inDone {
				s.deliver(mux.AppendReset(nil, a.sid, mux.CodeRefused, why))
			}
			a.inDone, a.muxDone = true, true
		case stClosing:
			// Both closed at once: neither answers (as DeleGate).
			a.finHeld = true
			s.flushHeld(a)
		default:
			s.send(Packet{Type: TypeCLOSED, Said: a.ours, Raid: a.peer, Data: withNUL(closedText)})
			a.state = stPeerClosed
			a.pending = nil
			a.finHeld = true
			s.flushHeld(a)
		}
		s.maybeForget(a)
	case TypeCLOSED:
		if a.state == stClosing {
			a.peerDone = true
			a.finHeld = true
			s.flushHeld(a)
			s.maybeForget(a)
		}
	}
	return nil
}

// restarted answers a HELLO in the middle of a session: the DeleGate at
// the other end restarted on the same channel (a FIFO pair, a serial
// line). Its connections are gone: every stream is reset, and the
// exchange is answered as at the start. Under s.mu.
func (s *session) restarted(p Packet) {
	peer, _ := Text(p.Data)
	s.log.Warn("the DeleGate peer restarted the tunnel (HELLO again); its connections are closed", "peer", clip(strings.ToValidUTF8(peer, "?")), "connections", len(s.agents))
	for _, a := range s.agents {
		if !a.inDone || !a.muxDone {
			s.deliver(mux.AppendReset(nil, a.sid, mux.CodeSessionEnded, "the DeleGate peer restarted"))
		}
	}
	s.agents = make(map[uint16]*agent)
	s.bySid = make(map[uint32]*agent)
	s.connEnd = -1
	s.send(Packet{Type: TypeHELLOOK, Said: p.Said, Raid: p.Raid, Data: withNUL(s.hello)})
	s.send(PackSizeOpt(s.l.cfg.PackSize))
	s.send(ConnDataOpt())
}

// connect takes the peer's CONNECT: a connection that entered the peer
// goes to the mux as a stream, routed by the port it entered on.
func (s *session) connect(p Packet) {
	text, initial := Text(p.Data)
	refuse := func(why string, args ...any) {
		s.log.Warn("refused a connection from the DeleGate peer: "+why, args...)
		s.send(Packet{Type: TypeCLOSE, Said: NoAgent, Raid: p.Said, Data: withNUL(closeText)})
	}
	ct, err := ParseConnectText(text)
	if err != nil {
		refuse("bad CONNECT", "err", err)
		return
	}
	a := s.newAgent()
	if a == nil {
		refuse("too many connections", "limit", s.l.cfg.MaxAgents)
		return
	}
	a.peer, a.state, a.sid, a.entrance = p.Said, stConnIn, s.nextSid, Port(ct.To)
	s.nextSid += 2
	s.bySid[a.sid] = a
	client := ct.From
	if len(client) > 64 {
		client = client[:64]
	}
	s.deliver(mux.AppendOpen(nil, a.sid, mux.Info{Network: "tcp", Entrance: a.entrance, Client: client}))
	s.inbound(a, initial, false)
}
