package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// ResetCode says why a stream was reset.
type ResetCode byte

// Reset codes, carried in RESET messages.
const (
	CodeClosed       ResetCode = iota // the other end's application gave up
	CodeRefused                       // the destination refused the connection
	CodeUnreachable                   // no route to the destination, or a name that does not resolve
	CodeTimeout                       // the destination did not answer in time
	CodeDenied                        // a policy forbids the destination
	CodeNoRoute                       // no forwarding rule matches
	CodeProtocol                      // the stream broke the protocol
	CodeSessionEnded                  // the link's session ended under the stream
	CodeLimit                         // too many streams, or out of resources
)

func (c ResetCode) String() string {
	switch c {
	case CodeClosed:
		return "closed"
	case CodeRefused:
		return "refused"
	case CodeUnreachable:
		return "unreachable"
	case CodeTimeout:
		return "timeout"
	case CodeDenied:
		return "denied"
	case CodeNoRoute:
		return "no route"
	case CodeProtocol:
		return "protocol error"
	case CodeSessionEnded:
		return "session ended"
	case CodeLimit:
		return "limit"
	}
	return fmt.Sprintf("code %d", byte(c))
}

// ResetError is how a reset stream fails its reads and writes.
type ResetError struct {
	Code   ResetCode
	Reason string
	Remote bool // reset by the far end (else here)
}

func (e *ResetError) Error() string {
	who := "stream reset"
	if e.Remote {
		who = "stream reset by peer"
	}
	if e.Reason == "" {
		return who + ": " + e.Code.String()
	}
	return who + ": " + e.Reason
}

// Info describes a stream: what its opener asked for and where the
// connection came from. The far end routes on it.
type Info struct {
	Network  string // "tcp" or "udp"
	Dest     string // requested destination host:port; empty when the far end decides
	Entrance int    // the port the connection entered on, at the opener's end
	Client   string // the address of the client that connected
	Tag      uint64 // the tag of the listener it came from (remote forwards)
	Proto    string // a protocol hint for the far end's rules
	// Service names a service of the far end's (one its hello named,
	// link.Link.PeerServices) that serves the stream itself, instead of
	// a destination; Dest then says what of the service is asked for.
	Service string
}

// Stream is one connection carried over the link. It is a net.Conn;
// CloseWrite half-closes it.
type Stream struct {
	m       *Mux
	id      uint32
	info    Info
	inbound bool
	created time.Time
	writeMu sync.Mutex // one Write at a time: wbuf holds one Write's bytes

	// Guarded by m.mu.
	state       streamState   // its two directions (state.go)
	hold        holdState     // the application's decision on it (state.go)
	acceptCh    chan struct{} // closed when accepted or reset
	accepted    bool          // the far end (outbound) or the application (inbound) accepted it; acceptCh is closed
	rbuf        []byte        // received, not yet read
	roff        int
	recvLeft    int    // credit the peer still has
	unreported  int    // bytes read and not yet returned as credit
	target      int    // receive window we aim to grant
	remoteFin   bool   // state.remoteDone(), kept by apply for the scheduler
	wbuf        []byte // a blocked Write's remaining bytes
	credit      int    // what we may still send
	inReady     bool
	interactive bool      // made ready by an interactive write
	openFill    uint64    // the Fill whose payload ends our OPEN; 0 while it waits
	bucket      float64   // bytes left in its interactive bucket (see takeInteractive)
	bucketAt    time.Time // when the bucket was last filled up
	bulk        bool      // emptied its bucket: bulk until it is full again
	talker      bool      // in m.talkers
	talkerAt    int       // its index there, while talker
	err         error     // why it was reset: set exactly when state is stateReset
	closed      bool      // Close called: its buffers are dropped
	readCh      chan struct{}
	writeCh     chan struct{}
	rdl, wdl    time.Time
	bytesIn     uint64
	bytesOut    uint64
	starved     bool // the far end ran short of credit since the last grant
}

// ID is the stream's id on the link.
func (s *Stream) ID() uint32 { return s.id }

// Info describes the stream.
func (s *Stream) Info() Info { return s.info }

// Inbound reports whether the far end opened the stream.
func (s *Stream) Inbound() bool { return s.inbound }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Read reads data the far end sent. It returns io.EOF after the far end
// half-closed and everything was read, a *ResetError if the stream was
// reset.
//
// Reads may run concurrently; each byte goes to one of them.
func (s *Stream) Read(p []byte) (int, error) {
	m := s.m
	for {
		m.mu.Lock()
		if n := len(s.rbuf) - s.roff; n > 0 {
			n = copy(p, s.rbuf[s.roff:])
			s.roff += n
			if s.roff == len(s.rbuf) {
				s.rbuf, s.roff = s.rbuf[:0], 0
				if cap(s.rbuf) > s.target {
					s.rbuf = nil // do not keep a big idle buffer
				}
			} else {
				signal(s.readCh) // another Read may take the rest
			}
			s.unreported += n
			m.maybeGrant(s)
			m.mu.Unlock()
			return n, nil
		}
		var err error
		switch {
		case s.err != nil:
			err = s.err
		case s.state.remoteDone():
			err = io.EOF
		case s.closed:
			err = net.ErrClosed
		}
		if err != nil {
			// The end is for every Read: wake the next one waiting
			// (one signal wakes one).
			signal(s.readCh)
			m.mu.Unlock()
			return 0, err
		}
		dl := s.rdl
		m.mu.Unlock()
		if err := wait(s.readCh, dl); err != nil {
			return 0, err
		}
	}
}

// Write sends p, blocking until all of it has been handed to the link
// (or the stream fails). Data goes out as the far end's credit allows.
// Concurrent Writes go out one after the other, each in one piece.
func (s *Stream) Write(p []byte) (int, error) {
	m := s.m
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	m.mu.Lock()
	if err := s.writeErr(); err != nil {
		m.mu.Unlock()
		return 0, err
	}
	if len(p) == 0 {
		m.mu.Unlock()
		return 0, nil
	}
	s.wbuf = p
	m.makeReady(s, s.takeInteractive(len(p), time.Now()))
	for {
		if len(s.wbuf) == 0 {
			m.mu.Unlock()
			return len(p), nil
		}
		if err := s.writeErr(); err != nil {
			n := len(p) - len(s.wbuf)
			s.wbuf = nil
			m.mu.Unlock()
			return n, err
		}
		dl := s.wdl
		m.mu.Unlock()
		err := wait(s.writeCh, dl)
		m.mu.Lock()
		if err != nil && len(s.wbuf) > 0 {
			n := len(p) - len(s.wbuf)
			s.wbuf = nil
			m.unready(s)
			m.mu.Unlock()
			return n, err
		}
	}
}

func (s *Stream) writeErr() error {
	switch {
	case s.err != nil:
		return s.err
	case s.state.localDone():
		return errWriteClosed
	case s.closed:
		return net.ErrClosed
	}
	return nil
}

var errWriteClosed = errors.New("write after CloseWrite")

// wait blocks until c is signalled or the deadline passes.
func wait(c chan struct{}, deadline time.Time) error {
	if deadline.IsZero() {
		<-c
		return nil
	}
	d := time.Until(deadline)
	if d <= 0 {
		return os.ErrDeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return nil
	case <-t.C:
		return os.ErrDeadlineExceeded
	}
}

// CloseWrite half-closes the stream: the far end reads EOF after the data
// sent so far. Reading goes on.
func (s *Stream) CloseWrite() error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.apply(evLocalFin) {
		m.queue(header(nil, msgFin, s.id))
		m.maybeForget(s)
	}
	return nil
}

// Close ends the stream. If both directions had finished it just lets go;
// otherwise it resets the stream, so the far end learns at once.
func (s *Stream) Close() error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.decide(s)
	if s.closed {
		return nil
	}
	s.closed = true
	if s.state != stateFinished {
		m.resetLocked(s, CodeClosed, "closed", true)
	}
	s.rbuf = nil
	signal(s.readCh)
	signal(s.writeCh)
	m.maybeForget(s)
	return nil
}

// Reset kills the stream with a reason the far end's client is told.
func (s *Stream) Reset(code ResetCode, reason string) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.decide(s)
	if s.err == nil {
		m.resetLocked(s, code, reason, true)
	}
}

// Accept tells the opener that its stream reached its destination.
func (s *Stream) Accept() {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.decide(s)
	if s.err == nil && !s.accepted {
		s.accepted = true
		close(s.acceptCh)
		m.queue(header(nil, msgAccept, s.id))
	}
}

// WaitAccepted waits until the far end accepted the stream (connected to
// its destination). It returns the reset error if it refused.
func (s *Stream) WaitAccepted(ctx context.Context) error {
	select {
	case <-s.acceptCh:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.err
}

// Err returns the reset error, nil while the stream lives.
func (s *Stream) Err() error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.err
}

// Counters returns the bytes read from and written to the stream.
func (s *Stream) Counters() (in, out uint64) {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.bytesIn, s.bytesOut
}

// Created is when the stream was opened.
func (s *Stream) Created() time.Time { return s.created }

// SetDeadline sets both deadlines.
func (s *Stream) SetDeadline(t time.Time) error {
	_ = s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// SetReadDeadline bounds pending and future Reads.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.m.mu.Lock()
	s.rdl = t
	s.m.mu.Unlock()
	signal(s.readCh)
	return nil
}

// SetWriteDeadline bounds pending and future Writes.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.m.mu.Lock()
	s.wdl = t
	s.m.mu.Unlock()
	signal(s.writeCh)
	return nil
}

// Addr is a stream's address: the link and the stream id.
type Addr struct {
	ID   uint32
	Peer string
}

// Network is "sockmux".
func (a Addr) Network() string { return "sockmux" }
func (a Addr) String() string  { return fmt.Sprintf("%s#%d", a.Peer, a.ID) }

// LocalAddr is this end of the stream.
func (s *Stream) LocalAddr() net.Addr { return Addr{ID: s.id, Peer: "local"} }

// RemoteAddr is the far end of the stream.
func (s *Stream) RemoteAddr() net.Addr { return Addr{ID: s.id, Peer: "peer"} }
