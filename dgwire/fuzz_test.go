package dgwire

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

type discardConn struct{}

func (discardConn) Read([]byte) (int, error)    { return 0, io.EOF }
func (discardConn) Write(b []byte) (int, error) { return len(b), nil }
func (discardConn) Close() error                { return nil }

type nopDriver struct{}

func (nopDriver) Open(context.Context) (io.ReadWriteCloser, error) { return discardConn{}, nil }
func (nopDriver) Properties() link.Properties                      { return link.Properties{Reliable: true} }
func (nopDriver) String() string                                   { return "nop" }

// FuzzSession feeds a session arbitrary packets from a hostile peer, in
// between the mux's own traffic (streams opened, written, closed and
// reset): nothing panics, and the queues stay bounded.
func FuzzSession(f *testing.F) {
	f.Add(hexBytes(f, capConnect+capClosed+capClose))
	f.Add(hexBytes(f, capConnect+"03 06 00 03 00 02 00 03 61 62 63"+"03 08 00 03 00 02 00 00"))
	f.Add(hexBytes(f, "03 42 00 02 00 02 00 05 61 20 62 00 7a"+"03 46 00 02 00 02 00 02 39 00"+capCHello))
	f.Fuzz(func(t *testing.T, b []byte) {
		log := slog.New(slog.DiscardHandler)
		m := mux.New(mux.Config{StreamWindow: mux.InitialWindow, Logger: log})
		l := New(nopDriver{}, m, Config{KeepAlive: -1, Logger: log, MaxAgents: 8, MaxHeld: 4096})
		s := newSession(l, discardConn{})
		s.connData = true
		m.SessionStart(link.SessionInfo{Local: 2, Peer: 1, MaxPayload: s.fillSize()})
		buf := make([]byte, s.fillSize())
		pump := func() {
			for i := 0; i < 8; i++ {
				s.mu.Lock()
				q := s.dq
				s.dq, s.out = nil, nil
				s.mu.Unlock()
				for _, p := range q {
					if err := m.Deliver(p); err != nil {
						t.Fatalf("the translation broke the mux protocol: %v", err)
					}
				}
				n, _ := m.Fill(buf, len(buf))
				if n == 0 && len(q) == 0 {
					return
				}
				if err := s.translate(buf[:n]); err != nil {
					t.Fatal(err)
				}
			}
		}
		ctx := context.Background()
		var opened []*mux.Stream
		r := NewReader(bytes.NewReader(b), 1024)
		for i := 0; ; i++ {
			switch i % 4 {
			case 0:
				if st, err := m.Open(ctx, mux.Info{Network: "tcp", Entrance: 17512, Client: "127.0.0.1:1"}); err == nil {
					opened = append(opened, st)
					go func() { _, _ = st.Write([]byte("hello")) }()
				}
			case 1:
				if len(opened) > 0 {
					_ = opened[0].CloseWrite()
				}
			case 2:
				if len(opened) > 1 {
					opened[1].Reset(mux.CodeClosed, "fuzz")
					opened = opened[2:]
				}
			}
			pump()
			p, err := r.Read()
			if err != nil {
				break
			}
			if err := s.handle(p); err != nil {
				break
			}
			select {
			case st := <-acceptNow(m):
				if st != nil {
					st.Accept()
					go func() { _, _ = io.Copy(io.Discard, st) }()
				}
			default:
			}
		}
		pump()
		m.Close()
	})
}

func acceptNow(m *mux.Mux) <-chan *mux.Stream {
	c := make(chan *mux.Stream, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st, _ := m.AcceptStream(ctx)
	c <- st
	return c
}
