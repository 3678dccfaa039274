package dgwire

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

// hexBytes decodes a hex dump of the capture ("03 01 31 5d ...").
func hexBytes(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	require.NoError(t, err)
	return b
}

// connDriver hands out one TCP connection per Open.
type connDriver struct{ conns chan io.ReadWriteCloser }

func (d *connDriver) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	select {
	case c := <-d.conns:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (d *connDriver) Properties() link.Properties { return link.Properties{Reliable: true} }
func (d *connDriver) String() string              { return "test tcp" }

// tcpPair is a connected pair of TCP connections on loopback (buffered,
// so both ends may write their HELLO first).
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	b := <-accepted
	require.NotNil(t, b)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// harness is a Link and its mux over TCP, with the test as the DeleGate
// peer on the other connection.
type harness struct {
	t    *testing.T
	m    *mux.Mux
	l    *Link
	peer net.Conn
	r    *Reader
	logs *testutil.LogBuffer
	done chan error
}

// captureTime is the receptor's HELLO time in the capture.
var captureTime = time.Date(2026, 12, 3, 11, 25, 39, 902885000, time.Local)

func newHarness(t *testing.T) *harness { return newHarnessWith(t, Config{KeepAlive: -1}) }

func newHarnessWith(t *testing.T, cfg Config) *harness {
	ours, peer := tcpPair(t)
	logs := &testutil.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := &harness{t: t, peer: peer, r: NewReader(peer, PackSize), logs: logs, done: make(chan error, 1)}
	d := &connDriver{conns: make(chan io.ReadWriteCloser, 1)}
	d.conns <- ours
	h.m = mux.New(mux.Config{StreamWindow: mux.InitialWindow, Notify: func() { h.l.Notify() }, Logger: log})
	cfg.Host, cfg.Now, cfg.Logger = "vm", func() time.Time { return captureTime }, log
	h.l = New(d, h.m, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- h.l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		h.m.Close()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return")
		}
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	return h
}

// write writes raw bytes as the peer.
func (h *harness) write(b []byte) {
	h.t.Helper()
	_, err := h.peer.Write(b)
	require.NoError(h.t, err)
}

func (h *harness) send(p Packet) { h.t.Helper(); h.write(p.Append(nil)) }

// read reads the next packet of ours, within 5 s.
func (h *harness) read() Packet {
	h.t.Helper()
	_ = h.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := h.r.Read()
	require.NoError(h.t, err)
	p.Data = append([]byte(nil), p.Data...)
	return p
}

// readRaw reads the next packet of ours and returns its bytes.
func (h *harness) readRaw() []byte {
	h.t.Helper()
	return h.read().Append(nil)
}

// Capture bytes, connector → receptor.
const (
	capCHello   = "03 01 31 5d 3a 20 00 1a 32 30 32 36 31 32 30 33 2d 31 31 32 35 33 39 2e 38 38 34 39 33 30 20 76 6d 00"
	capCHelloOK = "03 41 00 00 00 00 00 1a 32 30 32 36 31 32 30 33 2d 31 31 32 35 33 39 2e 38 38 34 39 33 30 20 76 6d 00"
	capCHello2  = "03 41 31 5d 3a 20 00 1a 32 30 32 36 31 32 30 33 2d 31 31 32 35 33 39 2e 38 38 34 39 33 30 20 76 6d 00"
	capPackSize = "03 0a 00 ff 00 ff 00 03 03 40 00"
	capConnData = "03 0a 00 ff 00 ff 00 03 02 01 00"
	// CONNECT @124: agent 3, "98304 127.0.0.1:57286 127.0.0.1:17512" and "GET 1000 1\n".
	capConnect = "03 02 00 03 00 ff 00 31 39 38 33 30 34 20 31 32 37 2e 30 2e 30 2e 31 3a 35 37 32 38 36 20 31 32 " +
		"37 2e 30 2e 30 2e 31 3a 31 37 35 31 32 00 47 45 54 20 31 30 30 30 20 31 0a"
	// CLOSED @181: agent 3 answers the receptor's agent 2.
	capClosed = "03 48 00 03 00 02 00 0a 4f 4b 20 63 6c 6f 73 65 64 00"
)

// Capture bytes, receptor → connector.
const (
	capRHello   = "03 01 00 00 00 00 00 1a 32 30 32 36 31 32 30 33 2d 31 31 32 35 33 39 2e 39 30 32 38 38 35 20 76 6d 00"
	capRHelloOK = "03 41 31 5d 3a 20 00 1a 32 30 32 36 31 32 30 33 2d 31 31 32 35 33 39 2e 39 30 32 38 38 35 20 76 6d 00"
	capRHello2  = "03 41 00 00 00 00 00 1a 32 30 32 36 31 32 30 33 2d 31 31 32 35 33 39 2e 39 30 32 38 38 35 20 76 6d 00"
	// CLOSE @1170: the receptor's agent 2 closes the connector's 3.
	capClose = "03 08 00 02 00 03 00 09 44 4f 20 63 6c 6f 73 65 00"
)

// handshake plays the connector's side of the capture's start-up and
// checks that the Link answers with the receptor's bytes, exactly.
func (h *harness) handshake() {
	h.t.Helper()
	h.write(hexBytes(h.t, capCHello))
	require.Equal(h.t, hexBytes(h.t, capRHello), h.readRaw(), "HELLO")
	require.Equal(h.t, hexBytes(h.t, capRHelloOK), h.readRaw(), "HELLOOK answering the HELLO, with its id fields")
	h.write(hexBytes(h.t, capCHelloOK))
	require.Equal(h.t, hexBytes(h.t, capRHello2), h.readRaw(), "HELLOOK answering the HELLOOK")
	require.Equal(h.t, hexBytes(h.t, capPackSize), h.readRaw(), "SETOPT PACKSIZE")
	require.Equal(h.t, hexBytes(h.t, capConnData), h.readRaw(), "SETOPT CONNDATA")
	h.write(hexBytes(h.t, capCHello2))
	h.write(hexBytes(h.t, capPackSize))
	h.write(hexBytes(h.t, capConnData))
	deadline := time.Now().Add(5 * time.Second)
	for !h.l.Stats().Up.Load() {
		require.True(h.t, time.Now().Before(deadline), "session never started")
		time.Sleep(time.Millisecond)
	}
}

// accept takes the next stream the peer opened.
func (h *harness) accept() *mux.Stream {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := h.m.AcceptStream(ctx)
	require.NoError(h.t, err)
	return s
}

// waitClosed waits until the Link closed the peer's connection.
func (h *harness) waitClosed() {
	h.t.Helper()
	_ = h.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := h.r.Read(); err != nil {
			var ne net.Error
			require.False(h.t, errors.As(err, &ne) && ne.Timeout(), "the Link did not close the tunnel")
			return
		}
	}
}

// waitLog waits until the logs hold s.
func (h *harness) waitLog(s string) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(h.logs.String(), s) {
		require.True(h.t, time.Now().Before(deadline), "no log %q", s)
		time.Sleep(5 * time.Millisecond)
	}
}
