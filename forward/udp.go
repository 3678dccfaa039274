package forward

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockmux/sockmux/mux"
)

// UDP crosses the link as streams, one per client address: each datagram
// is a 2-byte big-endian length and the datagram's bytes, so boundaries
// survive. A session ends after Config.UDPTimeout without a datagram
// either way; a listener keeps at most Config.UDPMaxSessions sessions.

// maxDatagram is the largest datagram carried.
const maxDatagram = 65535

// udpQueue bounds the datagrams of one client waiting for its stream;
// beyond it datagrams are dropped, as a full network would.
const udpQueue = 64

// writeDatagram writes p as one framed datagram.
func writeDatagram(w io.Writer, p []byte) error {
	if len(p) > maxDatagram {
		return fmt.Errorf("datagram of %d bytes is too long", len(p))
	}
	buf := make([]byte, 2+len(p))
	binary.BigEndian.PutUint16(buf, uint16(len(p)))
	copy(buf[2:], p)
	_, err := w.Write(buf)
	return err
}

// readDatagram reads one framed datagram.
func readDatagram(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	p := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return p, nil
}

// udpEntrance relays the datagrams that arrive at a UDP socket over the
// link, a stream for each client address, and the answers back.
type udpEntrance struct {
	f    *Forwarder
	pc   net.PacketConn
	info func(client string) mux.Info
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[string]*udpSession
	closed   bool
	done     chan struct{}
}

// udpSession is one client address of a udpEntrance.
type udpSession struct {
	e      *udpEntrance
	client net.Addr
	key    string
	in     chan []byte
	last   atomic.Int64 // unix nanoseconds of the last datagram either way
	end    chan struct{}
	once   sync.Once

	mu     sync.Mutex
	stream *mux.Stream
	why    string
}

func (f *Forwarder) newUDPEntrance(pc net.PacketConn, info func(client string) mux.Info) *udpEntrance {
	return &udpEntrance{
		f: f, pc: pc, info: info,
		log:      f.log.With("listen", pc.LocalAddr().String()+"/udp"),
		sessions: make(map[string]*udpSession),
		done:     make(chan struct{}),
	}
}

// run reads datagrams until the socket closes.
func (e *udpEntrance) run() {
	go e.reap()
	buf := make([]byte, maxDatagram)
	for {
		n, addr, err := e.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.log.Debug("UDP read failed", "err", err)
			continue
		}
		s := e.session(addr)
		if s == nil {
			return
		}
		s.touch()
		select {
		case s.in <- append([]byte(nil), buf[:n]...):
		default:
			e.log.Debug("UDP datagram dropped: the link is not keeping up", "client", s.key)
		}
	}
}

// session finds or starts the session of client addr; nil once closed.
func (e *udpEntrance) session(addr net.Addr) *udpSession {
	key := addr.String()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	if s := e.sessions[key]; s != nil {
		return s
	}
	if len(e.sessions) >= e.f.cfg.UDPMaxSessions {
		var oldest *udpSession
		for _, s := range e.sessions {
			if oldest == nil || s.last.Load() < oldest.last.Load() {
				oldest = s
			}
		}
		delete(e.sessions, oldest.key)
		e.log.Info("UDP session limit reached: ending the longest idle one", "limit", e.f.cfg.UDPMaxSessions, "client", oldest.key)
		go oldest.close("UDP session limit reached")
	}
	s := &udpSession{e: e, client: addr, key: key, in: make(chan []byte, udpQueue), end: make(chan struct{})}
	s.touch()
	e.sessions[key] = s
	e.f.conns.Add(1)
	go s.run()
	return s
}

// reap ends the sessions idle for longer than the timeout.
func (e *udpEntrance) reap() {
	timeout := e.f.cfg.UDPTimeout
	tick := time.NewTicker(min(max(timeout/4, 50*time.Millisecond), 5*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-tick.C:
		}
		cutoff := time.Now().Add(-timeout).UnixNano()
		var idle []*udpSession
		e.mu.Lock()
		for k, s := range e.sessions {
			if s.last.Load() < cutoff {
				delete(e.sessions, k)
				idle = append(idle, s)
			}
		}
		e.mu.Unlock()
		for _, s := range idle {
			e.log.Debug("UDP session idle", "client", s.key, "timeout", timeout)
			s.close(fmt.Sprintf("UDP session idle for %v", timeout))
		}
	}
}

// Close closes the socket and ends every session.
func (e *udpEntrance) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.done)
	all := e.sessions
	e.sessions = nil
	e.mu.Unlock()
	err := e.pc.Close()
	for _, s := range all {
		s.close("UDP listener closed")
	}
	return err
}

func (s *udpSession) touch() { s.last.Store(time.Now().UnixNano()) }

// run opens the session's stream and sends the client's datagrams over
// it; a second goroutine sends the far end's back.
func (s *udpSession) run() {
	e := s.e
	defer e.f.conns.Done()
	log := e.log.With("client", s.key)
	ctx, cancel := context.WithTimeout(context.Background(), e.f.cfg.LinkWait)
	go func() {
		select {
		case <-s.end:
			cancel()
		case <-ctx.Done():
		}
	}()
	st, err := e.f.m.Open(ctx, e.info(s.key))
	cancel()
	if err != nil {
		log.Warn("UDP datagrams dropped", "err", err)
		s.forget()
		s.close("")
		return
	}
	s.mu.Lock()
	if s.why != "" {
		s.mu.Unlock()
		st.Close()
		return
	}
	s.stream = st
	s.mu.Unlock()
	log = log.With("stream", st.ID())
	log.Debug("UDP session opened")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.down(st, log)
	}()
	for {
		select {
		case p := <-s.in:
			if err := writeDatagram(st, p); err != nil {
				s.forget()
				s.close("")
				wg.Wait()
				return
			}
		case <-s.end:
			wg.Wait()
			return
		}
	}
}

// down sends the datagrams that come back over the stream to the client.
func (s *udpSession) down(st *mux.Stream, log *slog.Logger) {
	for {
		p, err := readDatagram(st)
		if err != nil {
			var re *mux.ResetError
			switch {
			case errors.As(err, &re) && re.Remote && refusal(re.Code):
				log.Warn("far end refused the datagrams", "code", re.Code.String(), "reason", re.Reason)
			case errors.As(err, &re) && !re.Remote:
			case errors.Is(err, io.EOF):
				log.Debug("UDP session ended by the far end")
			default:
				log.Info("UDP session ended", "err", err)
			}
			s.forget()
			s.close("")
			return
		}
		s.touch()
		if _, err := s.e.pc.WriteTo(p, s.client); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Debug("UDP write to the client failed", "err", err)
		}
	}
}

// forget removes the session from its entrance, so that the client's
// next datagram starts a new one.
func (s *udpSession) forget() {
	e := s.e
	e.mu.Lock()
	if e.sessions[s.key] == s {
		delete(e.sessions, s.key)
	}
	e.mu.Unlock()
}

// close ends the session, telling the far end why (when why is set).
func (s *udpSession) close(why string) {
	s.once.Do(func() {
		s.mu.Lock()
		if why == "" {
			why = "UDP session ended"
		}
		s.why = why
		st := s.stream
		s.mu.Unlock()
		close(s.end)
		if st != nil {
			st.Reset(mux.CodeClosed, why)
			st.Close()
		}
	})
}

// deliverUDP relays a UDP stream from the far end to dest: its datagrams
// go out from a socket of their own, and what comes back to that socket
// returns over the stream, until the session is idle for UDPTimeout or
// the far end ends it.
func (f *Forwarder) deliverUDP(ctx context.Context, s *mux.Stream, dest string, log *slog.Logger) {
	c, err := f.dial(ctx, "udp", dest)
	if err != nil {
		code, reason := DialFailure(dest, err)
		log.Info("destination unreachable", "dest", dest, "reason", reason)
		s.Reset(code, reason)
		return
	}
	defer c.Close()
	s.Accept()
	log = log.With("dest", dest)
	log.Debug("UDP session connected")
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		for {
			p, err := readDatagram(s)
			if err != nil {
				c.Close()
				return
			}
			last.Store(time.Now().UnixNano())
			// A refused datagram (ICMP port unreachable) is lost, as
			// it would be without the link.
			_, _ = c.Write(p)
		}
	}()
	buf := make([]byte, maxDatagram)
	timeout := f.cfg.UDPTimeout
relay:
	for {
		_ = c.SetReadDeadline(time.Unix(0, last.Load()).Add(timeout))
		n, err := c.Read(buf)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if time.Since(time.Unix(0, last.Load())) < timeout {
				continue
			}
			log.Debug("UDP session idle", "timeout", timeout)
			s.Reset(mux.CodeClosed, fmt.Sprintf("UDP session idle for %v", timeout))
			break relay
		case errors.Is(err, net.ErrClosed):
			break relay // the far end ended the session
		case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
			continue // an ICMP port unreachable for an earlier datagram
		default:
			log.Info("UDP session ended", "err", err)
			s.Reset(mux.CodeClosed, "UDP socket failed: "+err.Error())
			break relay
		}
		last.Store(time.Now().UnixNano())
		if err := writeDatagram(s, buf[:n]); err != nil {
			break
		}
	}
	c.Close()
	<-upDone
	s.Close()
}
