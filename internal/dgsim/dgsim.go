package dgsim

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmux/sockmux/dgwire"
)

// Config is what a simulated DeleGate serves.
type Config struct {
	// Servers maps the port a connection entered on at the far end to
	// the server it goes to (SERVER=tcp://host:port,-in:-:-Pport); the
	// key 0 is the rule without a condition.
	Servers map[int]string
	// Host is the host name of HELLO.
	Host string
	// InitialWait is how long an entrance waits for the client's first
	// bytes to put them in CONNECT, and an exit for the server's to put
	// them in CONNECTED (CONNDATA). Zero sends none.
	InitialWait time.Duration
}

// Peer is one simulated DeleGate on one tunnel.
type Peer struct {
	cfg  Config
	t    io.ReadWriteCloser
	wmu  sync.Mutex
	mu   sync.Mutex
	ags  map[uint16]*agent
	next uint16
	pack atomic.Int64 // PACKSIZE: the peer's SETOPT sets it while agents read it
	done chan struct{}
	err  error
}

type agent struct {
	id, peer uint16
	c        net.Conn
	wq       chan []byte // data to write to c, in order; nil closes
	unacked  int
	cond     *sync.Cond
	closing  bool // we sent CLOSE
	gone     bool
}

// Start runs a simulated DeleGate over t: it does the HELLO exchange and
// serves until t breaks. Wait returns why.
func Start(t io.ReadWriteCloser, cfg Config) *Peer {
	if cfg.Host == "" {
		cfg.Host = "vm"
	}
	p := &Peer{cfg: cfg, t: t, ags: map[uint16]*agent{}, next: 2, done: make(chan struct{})}
	p.pack.Store(dgwire.PackSize)
	go p.run()
	return p
}

// Wait waits until the tunnel is over.
func (p *Peer) Wait() error { <-p.done; return p.err }

// Close ends the tunnel.
func (p *Peer) Close() { p.t.Close() }

func (p *Peer) write(pk dgwire.Packet) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err := p.t.Write(pk.Append(nil))
	return err
}

func (p *Peer) hello() []byte {
	return append([]byte(dgwire.HelloText(time.Now(), p.cfg.Host)), 0)
}

func (p *Peer) run() {
	defer close(p.done)
	defer p.t.Close()
	defer p.closeAgents()
	// DeleGate's HELLO carries stale bytes in its id fields.
	if err := p.write(dgwire.Packet{Type: dgwire.TypeHELLO, Said: 0x315d, Raid: 0x3a20, Data: p.hello()}); err != nil {
		p.err = err
		return
	}
	r := dgwire.NewReader(p.t, dgwire.PackSize)
	helloDone := false
	for {
		pk, err := r.Read()
		if err != nil {
			p.err = err
			return
		}
		if err := p.handle(pk, &helloDone); err != nil {
			p.err = err
			return
		}
	}
}

func (p *Peer) handle(pk dgwire.Packet, helloDone *bool) error {
	switch pk.Type {
	case dgwire.TypeHELLO:
		return p.write(dgwire.Packet{Type: dgwire.TypeHELLOOK, Said: pk.Said, Raid: pk.Raid, Data: p.hello()})
	case dgwire.TypeHELLOOK:
		if *helloDone {
			return nil
		}
		*helloDone = true
		if err := p.write(dgwire.Packet{Type: dgwire.TypeHELLOOK, Said: pk.Said, Raid: pk.Raid, Data: p.hello()}); err != nil {
			return err
		}
		if err := p.write(dgwire.PackSizeOpt(dgwire.PackSize)); err != nil {
			return err
		}
		return p.write(dgwire.ConnDataOpt())
	case dgwire.TypeSETOPT:
		if len(pk.Data) >= 3 && pk.Data[0] == dgwire.OptPACKSIZE {
			p.pack.Store(int64(min(dgwire.PackSize, int(pk.Data[1])<<8|int(pk.Data[2]))))
		}
		return nil
	case dgwire.TypeECHO:
		return p.write(dgwire.Packet{Type: dgwire.TypeECHOED, Said: pk.Raid, Raid: pk.Said, Data: append([]byte(nil), pk.Data...)})
	case dgwire.TypeCONNECT:
		return p.connect(pk)
	}
	if !*helloDone {
		return fmt.Errorf("%s before the HELLO exchange", dgwire.TypeName(pk.Type))
	}
	p.mu.Lock()
	a := p.ags[pk.Raid]
	p.mu.Unlock()
	if a == nil {
		return nil
	}
	switch pk.Type {
	case dgwire.TypeCONNECTED:
		_, initial := dgwire.Text(pk.Data)
		if len(initial) > 0 {
			a.wq <- append([]byte(nil), initial...)
		}
		a.cond.L.Lock()
		a.peer = pk.Said
		a.cond.Broadcast()
		a.cond.L.Unlock()
	case dgwire.TypeSEND:
		data := append([]byte(nil), pk.Data...)
		a.wq <- data // the writer sends SENT once written
	case dgwire.TypeSENT:
		n, err := dgwire.ParseCount(pk.Data)
		if err != nil {
			return err
		}
		a.cond.L.Lock()
		a.unacked -= n
		a.cond.Broadcast()
		a.cond.L.Unlock()
	case dgwire.TypeCLOSE:
		a.cond.L.Lock()
		closing := a.closing
		a.gone = true
		a.cond.Broadcast()
		a.cond.L.Unlock()
		a.wq <- nil // write what came, then close
		if !closing {
			return p.write(dgwire.Packet{Type: dgwire.TypeCLOSED, Said: a.id, Raid: a.peerID(), Data: []byte("OK closed\x00")})
		}
	case dgwire.TypeCLOSED:
		a.cond.L.Lock()
		a.gone = true
		a.cond.Broadcast()
		a.cond.L.Unlock()
		a.wq <- nil
	}
	return nil
}

func (p *Peer) newAgent(c net.Conn) *agent {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := &agent{id: p.next, peer: dgwire.NoAgent, c: c, wq: make(chan []byte, 1024), cond: sync.NewCond(new(sync.Mutex))}
	p.next++
	p.ags[a.id] = a
	return a
}

func (p *Peer) closeAgents() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.ags {
		a.c.Close()
		a.cond.L.Lock()
		a.gone = true
		a.cond.Broadcast()
		a.cond.L.Unlock()
	}
}

func (a *agent) peerID() uint16 {
	a.cond.L.Lock()
	defer a.cond.L.Unlock()
	return a.peer
}

// writer writes the peer's data to the socket and acknowledges it.
func (p *Peer) writer(a *agent) {
	for data := range a.wq {
		if data == nil {
			a.c.Close()
			return
		}
		if _, err := a.c.Write(data); err != nil {
			continue // the socket is gone; the reader sends CLOSE
		}
		if peer := a.peerID(); peer != dgwire.NoAgent {
			_ = p.write(dgwire.Packet{Type: dgwire.TypeSENT, Said: a.id, Raid: peer, Data: []byte(strconv.Itoa(len(data)) + "\x00")})
		}
	}
}

// reader reads the socket into SEND packets, holding back while more
// than 4 PACKSIZE are unacknowledged, and sends CLOSE at its end.
func (p *Peer) reader(a *agent) {
	buf := make([]byte, dgwire.PackSize-dgwire.HeaderLen)
	for {
		a.cond.L.Lock()
		for !a.gone && (a.peer == dgwire.NoAgent || a.unacked > 4*p.packSize()) {
			a.cond.Wait()
		}
		gone := a.gone
		a.cond.L.Unlock()
		if gone {
			return
		}
		n, err := a.c.Read(buf[:p.packSize()-dgwire.HeaderLen])
		if n > 0 {
			a.cond.L.Lock()
			a.unacked += n
			a.cond.L.Unlock()
			if p.write(dgwire.Packet{Type: dgwire.TypeSEND, Said: a.id, Raid: a.peerID(), Data: buf[:n]}) != nil {
				return
			}
		}
		if err != nil {
			a.cond.L.Lock()
			if a.gone {
				a.cond.L.Unlock()
				return
			}
			a.closing = true
			a.cond.L.Unlock()
			_ = p.write(dgwire.Packet{Type: dgwire.TypeCLOSE, Said: a.id, Raid: a.peerID(), Data: []byte("DO close\x00")})
			return
		}
	}
}

// initial reads what c sends within the wait, at most n bytes.
func (p *Peer) initial(c net.Conn, n int) []byte {
	if p.cfg.InitialWait <= 0 {
		return nil
	}
	buf := make([]byte, n)
	_ = c.SetReadDeadline(time.Now().Add(p.cfg.InitialWait))
	k, _ := c.Read(buf)
	_ = c.SetReadDeadline(time.Time{})
	return buf[:k]
}

// connect serves the far end's CONNECT: the server is chosen by the port
// the connection entered on.
func (p *Peer) connect(pk dgwire.Packet) error {
	text, initial := dgwire.Text(pk.Data)
	ct, err := dgwire.ParseConnectText(text)
	if err != nil {
		return err
	}
	dest, ok := p.cfg.Servers[dgwire.Port(ct.To)]
	if !ok {
		dest, ok = p.cfg.Servers[0]
	}
	var c net.Conn
	if ok {
		c, err = net.DialTimeout("tcp", dest, 5*time.Second)
	}
	if !ok || err != nil {
		return p.write(dgwire.Packet{Type: dgwire.TypeCLOSE, Said: dgwire.NoAgent, Raid: pk.Said, Data: []byte("DO close\x00")})
	}
	if len(initial) > 0 {
		if _, err := c.Write(initial); err != nil {
			c.Close()
			return nil
		}
	}
	a := p.newAgent(c)
	a.peer = pk.Said // before its goroutines start
	txt := dgwire.ConnectText{BufSize: dgwire.BufSize, From: c.RemoteAddr().String(), To: c.LocalAddr().String()}.String()
	data := append([]byte(txt), 0)
	first := p.initial(c, p.packSize()-dgwire.HeaderLen-len(data))
	if err := p.write(dgwire.Packet{Type: dgwire.TypeCONNECTED, Said: a.id, Raid: a.peer, Data: append(data, first...)}); err != nil {
		return err
	}
	go p.writer(a)
	go p.reader(a)
	return nil
}

// Entrance accepts connections on ln (DeleGate's PORT=) and carries each
// to the far end, which routes it by ln's port.
func (p *Peer) Entrance(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.enter(c)
		}
	}()
}

func (p *Peer) enter(c net.Conn) {
	a := p.newAgent(c)
	txt := dgwire.ConnectText{BufSize: dgwire.BufSize, From: c.RemoteAddr().String(), To: c.LocalAddr().String()}.String()
	data := append([]byte(txt), 0)
	data = append(data, p.initial(c, p.packSize()-dgwire.HeaderLen-len(data))...)
	go p.writer(a)
	if err := p.write(dgwire.Packet{Type: dgwire.TypeCONNECT, Said: a.id, Raid: dgwire.NoAgent, Data: data}); err != nil {
		c.Close()
		return
	}
	p.reader(a)
}

// packSize is the PACKSIZE in force.
func (p *Peer) packSize() int { return int(p.pack.Load()) }
