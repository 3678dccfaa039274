package dgwire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmux/sockmux/mux"
)

// An agent is one connection over the tunnel: DeleGate's agent, the
// mux's stream.
type agent struct {
	ours, peer uint16 // agent ids; peer is NoAgent until known
	sid        uint32 // the mux stream
	state      agentState
	entrance   int

	// mux → peer
	pending    []byte // data of the mux's before the peer's agent is known
	finAfter   bool   // the mux's FIN came before CONNECTED
	resetAfter bool   // the mux's RESET came before CONNECTED
	sentOut    int    // bytes sent in SEND, not yet acknowledged by SENT

	// peer → mux
	credit  int    // what the mux may still take of this stream
	held    []byte // data beyond that credit, in order
	runs    []run  // delivered to the mux and not yet read there
	finHeld bool   // deliver FIN once held is delivered

	muxDone  bool // the mux sent FIN or RESET
	inDone   bool // FIN or RESET delivered to the mux
	peerDone bool // the peer will send nothing more for this agent
}

// A run is bytes delivered to the mux: SEND data, which SENT acknowledges
// once read, or initial data (CONNECT, CONNECTED, SENDOOB), which no SENT
// acknowledges.
type run struct {
	n     int
	acked bool
}

type agentState uint8

const (
	stConnOut    agentState = iota // we sent CONNECT; waiting for CONNECTED
	stConnIn                       // the peer sent CONNECT; waiting for the mux's ACCEPT
	stOpen                         // connected
	stClosing                      // we sent CLOSE; waiting for CLOSED (or the peer's CLOSE)
	stPeerClosed                   // the peer sent CLOSE; we answered CLOSED
)

// Bounds against a peer that does not read or floods.
const (
	maxOut     = 4 << 20 // bytes of packets waiting to be written
	maxUnknown = 16      // packets of unknown types skipped per session
)

// session is the state of one transport's session.
type session struct {
	l   *Link
	t   io.ReadWriteCloser
	r   *Reader
	log *slog.Logger

	hello     string // our HELLO text
	peerHello string
	peerPack  int  // the peer's PACKSIZE
	connData  bool // the peer takes initial data in CONNECT
	unknown   int

	lastHeard atomic.Int64 // unix nanoseconds
	echoed    atomic.Bool  // the peer answered an ECHO

	failOnce sync.Once
	err      error
	dead     chan struct{}

	mu       sync.Mutex
	out      []byte // packets waiting to be written
	outCh    chan struct{}
	dq       [][]byte // mux payloads waiting to be delivered, in order
	dqCh     chan struct{}
	agents   map[uint16]*agent // by our id
	bySid    map[uint32]*agent
	nextID   uint16
	nextSid  uint32 // for the peer's connections: even (ours are odd)
	connAt   int    // where in out the last CONNECT starts, to add initial data
	connEnd  int    // and ends; -1 when out changed since
	connA    *agent
	warnDest bool
}

func newSession(l *Link, t io.ReadWriteCloser) *session {
	now := l.cfg.Now()
	return &session{
		l: l, t: t, log: l.log,
		r:       NewReader(t, l.cfg.PackSize),
		hello:   HelloText(now, l.cfg.Host),
		dead:    make(chan struct{}),
		outCh:   make(chan struct{}, 1),
		dqCh:    make(chan struct{}, 1),
		agents:  make(map[uint16]*agent),
		bySid:   make(map[uint32]*agent),
		nextID:  minAgentID,
		nextSid: 2,
		connEnd: -1,
	}
}

// HelloText is the text of HELLO and HELLOOK: "YYYYmmdd-HHMMSS.uuuuuu host".
func HelloText(t time.Time, host string) string {
	return t.Format("20060102-150405.000000") + " " + host
}

// sendPack is the longest packet sent: the shorter PACKSIZE of the two.
func (s *session) sendPack() int {
	if s.peerPack > 0 {
		return min(s.peerPack, s.l.cfg.PackSize)
	}
	return s.l.cfg.PackSize
}

// fillSize is the payload the mux fills: what one SEND carries.
func (s *session) fillSize() int { return max(s.sendPack()-HeaderLen, 512) }

func (s *session) fail(err error) {
	s.failOnce.Do(func() {
		s.err = err
		close(s.dead)
		s.t.Close()
	})
}

// writeNow writes packets on the calling goroutine (the handshake's).
func (s *session) writeNow(ps ...Packet) error {
	var b []byte
	for _, p := range ps {
		b = p.Append(b)
		s.l.stats.PacketsOut.Add(1)
	}
	s.l.stats.BytesOut.Add(uint64(len(b)))
	_, err := s.t.Write(b)
	return err
}

// handshake exchanges HELLO and HELLOOK as DeleGate does: each side sends
// HELLO; a HELLO is answered with HELLOOK; the first HELLOOK is answered
// with HELLOOK and ends the exchange. The answer carries the id fields of
// the packet it answers (DeleGate reuses the buffer). Then SETOPT PACKSIZE
// and CONNDATA.
func (s *session) handshake(ctx context.Context) error {
	var timedOut atomic.Bool
	timer := time.AfterFunc(s.l.cfg.HandshakeTimeout, func() { timedOut.Store(true); s.t.Close() })
	defer timer.Stop()
	text := withNUL(s.hello)
	if err := s.writeNow(Packet{Type: TypeHELLO, Data: text}); err != nil {
		return fmt.Errorf("sending HELLO: %w", err)
	}
	for {
		p, err := s.read()
		if err != nil {
			if timedOut.Load() {
				return fmt.Errorf("no HELLOOK from the DeleGate peer within %v", s.l.cfg.HandshakeTimeout)
			}
			if e := s.l.closingErr(ctx); e != nil {
				return e
			}
			return fmt.Errorf("during the HELLO exchange: %w", err)
		}
		switch p.Type {
		case TypeHELLO, TypeHELLOOK:
			peer, _ := Text(p.Data)
			if s.peerHello == "" {
				s.peerHello = clip(strings.ToValidUTF8(peer, "?"))
			}
			if err := s.writeNow(Packet{Type: TypeHELLOOK, Said: p.Said, Raid: p.Raid, Data: text}); err != nil {
				return fmt.Errorf("sending HELLOOK: %w", err)
			}
			if p.Type == TypeHELLOOK {
				return s.writeNow(PackSizeOpt(s.l.cfg.PackSize), ConnDataOpt())
			}
		case TypeSETOPT:
			if err := s.setopt(p); err != nil {
				return err
			}
		case TypeNOOP:
		case TypeCRYPTON:
			return ErrCrypt
		default:
			return fmt.Errorf("the DeleGate peer sent %s before the HELLO exchange ended", TypeName(p.Type))
		}
	}
}

func (s *session) read() (Packet, error) {
	p, err := s.r.Read()
	if err == nil {
		s.l.stats.PacketsIn.Add(1)
		s.l.stats.BytesIn.Add(uint64(HeaderLen + len(p.Data)))
		s.lastHeard.Store(time.Now().UnixNano())
	}
	return p, err
}

func (s *session) setopt(p Packet) error {
	if len(p.Data) == 0 {
		return errors.New("the DeleGate peer sent an empty SETOPT")
	}
	switch p.Data[0] {
	case OptCRYPT:
		return ErrCrypt
	case OptPACKSIZE:
		if len(p.Data) < 3 {
			return fmt.Errorf("the DeleGate peer sent SETOPT PACKSIZE of %d bytes", len(p.Data))
		}
		n := int(p.Data[1])<<8 | int(p.Data[2])
		if n == 0 {
			n = 0x10000 // 65536 does not fit 16 bits
		}
		if n < 512+HeaderLen {
			return fmt.Errorf("the DeleGate peer's PACKSIZE %d is too small (at least %d)", n, 512+HeaderLen)
		}
		s.peerPack = n
		s.r.PackSize = max(s.l.cfg.PackSize, min(n, HeaderLen+0xFFFF))
		s.log.Debug("DeleGate peer's PACKSIZE", "packsize", n)
	case OptCONNDATA:
		s.connData = len(p.Data) < 2 || p.Data[1] != 0
		s.log.Debug("DeleGate peer's CONNDATA", "on", s.connData)
	case OptAUTH:
		s.log.Warn("the DeleGate peer sent AUTH credentials; sockmux does not check them (it has no DeleGate AUTH)")
	default:
		s.log.Warn("the DeleGate peer sent an unknown SETOPT option; ignored", "option", p.Data[0])
	}
	return nil
}

// run carries the session until the transport breaks or the link closes.
func (s *session) run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.writeLoop(ctx) }()
	go func() { defer wg.Done(); s.deliverLoop() }()
	for {
		p, err := s.read()
		if err != nil {
			if e := s.l.closingErr(ctx); e != nil {
				err = e
			} else if err == io.EOF {
				err = errors.New("the DeleGate peer closed the tunnel")
			}
			s.fail(err)
			break
		}
		if err := s.handle(p); err != nil {
			s.fail(err)
			break
		}
	}
	wg.Wait()
	return s.err
}

// deliverLoop hands the mux what the reader and the writer queued, in
// order, from one goroutine.
func (s *session) deliverLoop() {
	for {
		s.mu.Lock()
		q := s.dq
		s.dq = nil
		s.mu.Unlock()
		for _, p := range q {
			if err := s.l.up.Deliver(p); err != nil {
				s.fail(fmt.Errorf("translating for the mux: %w", err))
				return
			}
		}
		select {
		case <-s.dqCh:
		case <-s.dead:
			return
		}
	}
}

// deliver queues a mux payload, under s.mu.
func (s *session) deliver(p []byte) {
	s.dq = append(s.dq, p)
	select {
	case s.dqCh <- struct{}{}:
	default:
	}
}

// send queues a packet, under s.mu.
func (s *session) send(p Packet) {
	if len(s.out) > maxOut {
		// The peer sends requests (ECHO, CONNECT) and does not read the
		// answers: the writer is stuck.
		s.fail(fmt.Errorf("the DeleGate peer does not read: %d bytes of packets wait", len(s.out)))
		return
	}
	s.out = p.Append(s.out)
	s.connEnd = -1
	select {
	case s.outCh <- struct{}{}:
	default:
	}
}

// writeLoop pulls the mux's payloads, translates them and writes the
// packets, with what the reader queued.
func (s *session) writeLoop(ctx context.Context) {
	s.mu.Lock()
	buf := make([]byte, s.fillSize())
	s.mu.Unlock()
	var tick <-chan time.Time
	ka := s.l.cfg.KeepAlive
	if ka > 0 {
		t := time.NewTicker(min(ka, time.Second*5))
		defer t.Stop()
		tick = t.C
	}
	lastSent := time.Now()
	for {
		for s.outLen() < 256<<10 {
			n, _ := s.l.up.Fill(buf, len(buf))
			if n == 0 {
				break
			}
			if err := s.translate(buf[:n]); err != nil {
				s.fail(err)
				return
			}
		}
		s.mu.Lock()
		b := s.out
		s.out = nil
		s.connEnd = -1
		over := len(b) > maxOut
		s.mu.Unlock()
		if over {
			s.fail(fmt.Errorf("the DeleGate peer does not read: %d bytes of packets wait", len(b)))
			return
		}
		if len(b) > 0 {
			if _, err := s.t.Write(b); err != nil {
				s.fail(fmt.Errorf("writing to the tunnel: %w", err))
				return
			}
			s.l.stats.BytesOut.Add(uint64(len(b)))
			lastSent = time.Now()
			continue
		}
		select {
		case <-s.l.notify:
		case <-s.outCh:
		case now := <-tick:
			heard := time.Unix(0, s.lastHeard.Load())
			if s.echoed.Load() && now.Sub(heard) > 3*ka {
				s.fail(fmt.Errorf("no packet from the DeleGate peer for %v", now.Sub(heard).Round(time.Second)))
				return
			}
			if now.Sub(lastSent) >= ka && now.Sub(heard) >= ka {
				s.mu.Lock()
				s.send(Packet{Type: TypeECHO, Said: NoAgent, Raid: NoAgent, Data: withNUL(HelloText(s.l.cfg.Now(), s.l.cfg.Host))})
				s.mu.Unlock()
			}
		case <-s.l.closing:
			s.closeAll()
			s.mu.Lock()
			b := s.out
			s.out = nil
			s.mu.Unlock()
			if len(b) > 0 {
				_, _ = s.t.Write(b)
			}
			s.fail(errClosing)
			return
		case <-s.dead:
			return
		case <-ctx.Done():
			s.fail(ctx.Err())
			return
		}
	}
}

// closeAll sends CLOSE for every connection still open: the link is
// closing.
func (s *session) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.agents {
		if a.peer != NoAgent && (a.state == stOpen || a.state == stConnIn) {
			s.send(Packet{Type: TypeCLOSE, Said: a.ours, Raid: a.peer, Data: withNUL(closeText)})
			a.state = stClosing
		}
	}
}

// newAgent makes an agent with a free id of ours, under s.mu; nil when
// MaxAgents are open.
func (s *session) newAgent() *agent {
	if len(s.agents) >= s.l.cfg.MaxAgents {
		return nil
	}
	for {
		id := s.nextID
		s.nextID++
		if s.nextID > maxAgentID {
			s.nextID = minAgentID
		}
		if s.agents[id] == nil {
			a := &agent{ours: id, peer: NoAgent, credit: mux.InitialWindow}
			s.agents[id] = a
			return a
		}
	}
}

// maybeForget drops a once nothing more is to come either way, under s.mu.
func (s *session) maybeForget(a *agent) {
	if a.muxDone && a.inDone && a.peerDone {
		if s.agents[a.ours] == a {
			delete(s.agents, a.ours)
		}
		if s.bySid[a.sid] == a {
			delete(s.bySid, a.sid)
		}
	}
}

func (s *session) outLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.out)
}

// sendClose sends CLOSE for a, under s.mu.
func (s *session) sendClose(a *agent) {
	s.send(Packet{Type: TypeCLOSE, Said: a.ours, Raid: a.peer, Data: withNUL(closeText)})
	a.state = stClosing
}

// sendData sends data to a's peer in SEND packets, under s.mu.
func (s *session) sendData(a *agent, data []byte) {
	chunk := s.sendPack() - HeaderLen
	for len(data) > 0 {
		n := min(len(data), chunk)
		s.send(Packet{Type: TypeSEND, Said: a.ours, Raid: a.peer, Data: data[:n]})
		s.l.stats.PayloadOut.Add(uint64(n))
		a.sentOut += n
		data = data[n:]
	}
}
