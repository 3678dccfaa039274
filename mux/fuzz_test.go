package mux

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sockmux/sockmux/link"
)

// Fuzz targets for what the mux reads from the far end. Their seeds
// (f.Add and testdata/fuzz) run in every `go test`; `make fuzz` runs each
// one for FUZZTIME.

// fuzzMaxData is the largest DATA message the fuzzed parser accepts.
const fuzzMaxData = 1000

// FuzzParseMessage checks the message parser against the way the mux uses
// it on a byte stream cut anywhere: a message it parses from b parses the
// same from b[:n] and is "short" from every shorter prefix; a short buffer
// is short in every prefix; an error stays an error whatever follows; and
// a parsed message encodes back to one that parses the same.
func FuzzParseMessage(f *testing.F) {
	for _, seed := range fuzzMessages() {
		f.Add(seed)
	}
	f.Add([]byte{msgData, 1, 0xe9, 0x07}) // 1001 bytes: oversize
	f.Add([]byte{msgWindow, 1, 0})
	f.Add([]byte{msgWindow, 1, 0x80, 0x80, 0x80, 0x80, 0x08})
	f.Add([]byte{msgOpen, 0xff, 0xff, 0xff, 0xff, 0x10, 0})
	f.Add([]byte{0x7f, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, n, err := parseMessage(b, fuzzMaxData)
		switch {
		case err == nil, errors.Is(err, errOversize):
			if n <= 0 || n > len(b) {
				t.Fatalf("length %d of a %d-byte buffer", n, len(b))
			}
			again, n2, err2 := parseMessage(b[:n], fuzzMaxData)
			if n2 != n || !errors.Is(err2, err) && err2 != err || !sameMessage(again, msg) {
				t.Fatalf("b[:%d] parses as %+v, %d, %v; b as %+v, %d, %v", n, again, n2, err2, msg, n, err)
			}
			for i := range n {
				if _, _, err := parseMessage(b[:i], fuzzMaxData); !errors.Is(err, errShort) {
					t.Fatalf("prefix of %d bytes of a %d-byte message: %v, want short", i, n, err)
				}
			}
			if errors.Is(err, errOversize) {
				if msg.typ != msgData || msg.n <= fuzzMaxData {
					t.Fatalf("oversize %+v", msg)
				}
				return
			}
			if msg.typ == msgData && len(msg.body) > fuzzMaxData {
				t.Fatalf("data of %d bytes accepted", len(msg.body))
			}
			enc := encodeMessage(msg)
			back, k, err := parseMessage(enc, fuzzMaxData)
			if err != nil || k != len(enc) || !sameMessage(back, msg) {
				t.Fatalf("%+v encodes as %x, which parses as %+v, %d, %v", msg, enc, back, k, err)
			}
		case errors.Is(err, errShort):
			for i := range len(b) {
				if _, _, err := parseMessage(b[:i], fuzzMaxData); !errors.Is(err, errShort) {
					t.Fatalf("b is short but its %d-byte prefix: %v", i, err)
				}
			}
		case errors.Is(err, errProtocol):
			more := append(append([]byte(nil), b...), bytes.Repeat([]byte{0x80}, 12)...)
			if _, _, err2 := parseMessage(more, fuzzMaxData); !errors.Is(err2, errProtocol) {
				t.Fatalf("%x is a protocol error (%v), but not once more bytes follow: %v", b, err, err2)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func sameMessage(a, b message) bool {
	return a.typ == b.typ && a.sid == b.sid && a.n == b.n && bytes.Equal(a.body, b.body)
}

// encodeMessage builds a message the way this end sends it.
func encodeMessage(m message) []byte {
	b := header(nil, m.typ, m.sid)
	switch m.typ {
	case msgAccept, msgFin:
		return b
	case msgWindow:
		return binary.AppendUvarint(b, m.n)
	case msgReset:
		b = append(b, byte(m.n))
	}
	return withBody(b, m.body)
}

// fuzzMessages are well-formed message sequences for seeds: the far end's
// side of opening, using, refusing and ending streams (the fuzzed mux has
// even ids, the far end odd ones).
func fuzzMessages() [][]byte {
	data := func(sid uint32, n int) []byte {
		return withBody(header(nil, msgData, sid), bytes.Repeat([]byte{byte(sid)}, n))
	}
	window := func(sid uint32, n uint64) []byte { return binary.AppendUvarint(header(nil, msgWindow, sid), n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	listen := listenMessage(ListenRequest{Network: "tcp", Bind: "127.0.0.1:0", Tag: 3})
	return [][]byte{
		cat(openMessage(1, Info{Network: "tcp", Dest: "example.org:80", Entrance: 8080, Client: "127.0.0.1:5555"}), data(1, 100)),
		cat(openMessage(1, Info{}), data(1, 300), header(nil, msgFin, 1)),
		cat(openMessage(3, Info{Dest: "h:1"}), resetMessage(3, CodeClosed, "closed")),
		cat(openMessage(5, Info{}), data(5, 900), data(5, 900)),
		cat(header(nil, msgAccept, 2), window(2, 1000), header(nil, msgFin, 2), resetMessage(2, CodeRefused, "no")),
		cat(openMessage(7, Info{}), openMessage(9, Info{}), openMessage(11, Info{}), openMessage(13, Info{}),
			openMessage(15, Info{}), openMessage(17, Info{}), openMessage(19, Info{})),
		cat(listen, listen, listen, withBody(header(nil, msgListenResult, 0), nil)),
		cat(openMessage(21, Info{Tag: 1 << 40, Proto: "socks"}), withBody(header(nil, msgData, 21), make([]byte, 2*InitialWindow+1))),
		openMessage(2, Info{}),
	}
}

// fuzzConfig makes every limit small enough for the fuzzer to reach.
func fuzzConfig() Config {
	return Config{
		Logger:        quiet(),
		StreamWindow:  2 * InitialWindow,
		MaxStreams:    6,
		MaxBuffered:   5 * InitialWindow,
		AcceptBacklog: 3,
		MaxReplyQueue: 600,
	}
}

// fuzzApp plays the application above a fuzzed mux. Actions are chosen by
// the fuzzer: after each payload, one byte says what the application does.
type fuzzApp struct {
	m    *Mux
	held []*Stream // streams the application got, in order
	buf  []byte
}

func (a *fuzzApp) accept() *Stream {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for len(a.m.accepts) > 0 {
		if s, err := a.m.AcceptStream(done); err == nil {
			a.held = append(a.held, s)
			return s
		}
	}
	return nil
}

func (a *fuzzApp) pick(k byte) *Stream {
	if len(a.held) == 0 {
		return nil
	}
	return a.held[int(k)%len(a.held)]
}

func (a *fuzzApp) act(op byte) {
	switch op >> 5 {
	case 1: // accept the next stream, and take it
		if s := a.accept(); s != nil {
			s.Accept()
		}
	case 2: // accept the next stream, and refuse it
		if s := a.accept(); s != nil {
			s.Reset(CodeRefused, "refused")
		}
	case 3: // accept the next stream and think about it
		a.accept()
	case 4: // read what a stream holds
		if s := a.pick(op); s != nil {
			_ = s.SetReadDeadline(aLongTimeAgo)
			for {
				if n, err := s.Read(a.buf); n == 0 || err != nil {
					break
				}
			}
		}
	case 5: // close a stream
		if s := a.pick(op); s != nil {
			_ = s.Close()
		}
	case 6: // the link sends what the mux has to send
		for fillN(a.m, a.buf) > 0 {
		}
	case 7: // open a stream of our own
		ctx, cancel := context.WithCancel(context.Background())
		if s, err := a.m.Open(ctx, Info{Dest: "h:1"}); err == nil {
			a.held = append(a.held, s)
		}
		cancel()
	}
}

// FuzzDeliver feeds an arbitrary byte stream, cut into payloads at
// arbitrary places, to a mux with a session up, while an application
// accepts, reads, closes and opens streams. After every payload the mux
// must be consistent and within its limits; when Deliver fails (the link
// then abandons the session) ending the session must free everything.
// Without application actions, how the stream is cut must not matter,
// but for a cut inside a message: messages never continue across
// payloads, so that one fails as a protocol error.
func FuzzDeliver(f *testing.F) {
	for i, seed := range fuzzMessages() {
		f.Add(seed, []byte{byte(i * 7), 0x20, 0x9f, 0xc0, 0x60, 0xe0, 0x40})
		f.Add(seed, []byte{})
	}
	f.Fuzz(func(t *testing.T, stream, ops []byte) {
		cut := runDeliver(t, stream, ops)
		if !bytes.ContainsFunc(ops, func(r rune) bool { return r >= 0x20 }) {
			whole := runDeliver(t, stream, nil)
			if cut != whole && !strings.Contains(cut, "runs past the end of its payload") {
				t.Fatalf("cut into payloads by %x:\n%s\ndelivered whole:\n%s", ops, cut, whole)
			}
		}
	})
}

// runDeliver delivers stream in payloads cut by ops (low 5 bits: length
// of the next payload - 1; high 3 bits: what the application does then;
// no ops: one payload) and returns a summary of the outcome.
func runDeliver(t *testing.T, stream, ops []byte) string {
	m := New(fuzzConfig())
	m.SessionStart(link.SessionInfo{Local: 1, Peer: 2}) // our ids even
	app := &fuzzApp{m: m, buf: make([]byte, 4096)}
	var failed error
	for i := 0; len(stream) > 0 && failed == nil; i++ {
		p := stream
		var op byte
		if len(ops) > 0 {
			op = ops[i%len(ops)]
			p = stream[:min(len(stream), int(op&0x1f)+1)]
		}
		stream = stream[len(p):]
		if err := m.Deliver(p); err != nil {
			if !errors.Is(err, errProtocol) {
				t.Fatalf("Deliver: %v is not a protocol error", err)
			}
			failed = err
		}
		checkMux(t, m, app.held, failed == nil)
		if failed == nil {
			app.act(op)
			checkMux(t, m, app.held, true)
		}
	}
	summary := summarize(m, failed)
	m.SessionEnd(errors.New("fuzz: session over"))
	checkMux(t, m, app.held, true)
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.streams) != 0 || m.reserved != 0 || len(m.ctrl) != 0 || m.replyBytes != 0 {
		t.Fatalf("after the session: %d streams, %d reserved, %d control messages", len(m.streams), m.reserved, len(m.ctrl))
	}
	return summary
}

// aLongTimeAgo is a read deadline that makes Read return at once.
var aLongTimeAgo = time.Unix(1, 0)

// summarize describes what the far end achieved: the streams and what they
// hold, and what the mux answers.
func summarize(m *Mux, failed error) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, "error %v\n", failed)
	for id := range uint32(64) {
		if s := m.streams[id]; s != nil {
			fmt.Fprintf(&b, "stream %d %+v fin %v buffered %x window %d left %d credit %d\n",
				id, s.info, s.remoteFin, s.rbuf[s.roff:], s.target, s.recvLeft, s.credit)
		}
	}
	fmt.Fprintf(&b, "streams %d accepts %d reserved %d\n", len(m.streams), len(m.accepts), m.reserved)
	for _, c := range m.ctrl {
		fmt.Fprintf(&b, "ctrl %x reply %v\n", c.b, c.reply)
	}
	return b.String()
}

// checkMux asserts the mux's invariants: the table is consistent, every
// limit holds, and the accounting matches what it counts.
func checkMux(t *testing.T, m *Mux, held []*Stream, limitsHold bool) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg := m.cfg
	reserved := 0
	for id, s := range m.streams {
		if s.id != id || id == 0 {
			t.Fatalf("stream %d filed under %d", s.id, id)
		}
		if ours := (id%2 == 1) == m.odd; ours == s.inbound {
			t.Fatalf("stream %d inbound %v has the wrong parity", id, s.inbound)
		}
		if s.err != nil {
			t.Fatalf("stream %d in the table reset: %v", id, s.err)
		}
		if (s.err != nil) != (s.state == stateReset) || s.remoteFin != s.state.remoteDone() {
			t.Fatalf("stream %d: state %v, err %v, remoteFin %v disagree", id, s.state, s.err, s.remoteFin)
		}
		buffered := len(s.rbuf) - s.roff
		if s.recvLeft < 0 || buffered+s.recvLeft+s.unreported > s.target || cap(s.rbuf) > s.target {
			t.Fatalf("stream %d: buffered %d (cap %d) + credit left %d + unreported %d beyond its window %d",
				id, buffered, cap(s.rbuf), s.recvLeft, s.unreported, s.target)
		}
		if s.target > cfg.StreamWindow || s.target < InitialWindow {
			t.Fatalf("stream %d window %d", id, s.target)
		}
		if s.credit < 0 || s.credit > maxCredit {
			t.Fatalf("stream %d credit %d", id, s.credit)
		}
		reserved += s.target
	}
	if reserved != m.reserved {
		t.Fatalf("reserved %d, the windows add up to %d", m.reserved, reserved)
	}
	if m.reserved > cfg.MaxBuffered {
		t.Fatalf("reserved %d beyond the budget %d", m.reserved, cfg.MaxBuffered)
	}
	zombies := 0
	for _, s := range held {
		if s.hold == holdZombie {
			zombies++
			if m.streams[s.id] == s {
				t.Fatalf("stream %d: zombie in the table", s.id)
			}
		}
		if s.inbound && s.hold == holdQueued {
			t.Fatalf("stream %d: the application holds it, its state says queued", s.id)
		}
		if s.err != nil && len(s.rbuf) != s.roff {
			t.Fatalf("reset stream %d still holds %d bytes", s.id, len(s.rbuf)-s.roff)
		}
	}
	if zombies != m.zombies {
		t.Fatalf("%d zombies counted, %d found", m.zombies, zombies)
	}
	if len(m.streams)+m.zombies > cfg.MaxStreams {
		t.Fatalf("%d streams + %d zombies beyond the limit %d", len(m.streams), m.zombies, cfg.MaxStreams)
	}
	replies := 0
	for _, c := range m.ctrl {
		if c.reply {
			replies += len(c.b)
		}
	}
	if replies != m.replyBytes {
		t.Fatalf("reply bytes %d counted, %d queued", m.replyBytes, replies)
	}
	if limitsHold && m.replyBytes > cfg.MaxReplyQueue {
		t.Fatalf("%d bytes of replies queued, limit %d", m.replyBytes, cfg.MaxReplyQueue)
	}
	for _, s := range m.ready {
		if !s.inReady || m.streams[s.id] != s {
			t.Fatalf("stream %d ready but not marked, or not in the table", s.id)
		}
	}
	if len(m.accepts) > cap(m.accepts) || cap(m.accepts) > cfg.AcceptBacklog {
		t.Fatalf("accept queue %d of %d", len(m.accepts), cap(m.accepts))
	}
}
