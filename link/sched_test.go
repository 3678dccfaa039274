package link

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"
)

func dueState(up bool, steps ...step) sendState {
	st := sendState{up: up}
	for _, s := range steps {
		st.set(s, true)
	}
	return st
}

func TestPickOrder(t *testing.T) {
	for _, c := range []struct {
		name  string
		st    sendState
		after step
		want  step
	}{
		{"nothing due", dueState(true), stepNone, stepNone},
		{"goodbye before hello", dueState(true, stepHello, stepGoodbye), stepNone, stepGoodbye},
		{"abandon before goodbye", dueState(true, stepGoodbye, stepAbandon), stepNone, stepAbandon},
		{"hello before auth", dueState(false, stepAuth, stepHello), stepNone, stepHello},
		{"refusal ends the handshake ladder", dueState(false, stepRefuse), stepNone, stepRefuse},
		{"no data before the session is up", dueState(false, stepPull, stepPong, stepPing), stepNone, stepNone},
		{"pong before acks", dueState(true, stepSackAck, stepPong), stepNone, stepPong},
		{"sack ack before urgent data", dueState(true, stepUrgent, stepSackAck), stepNone, stepSackAck},
		{"urgent data before resends", dueState(true, stepResend, stepUrgent), stepNone, stepUrgent},
		{"resend before the held frame", dueState(true, stepHeld, stepResend), stepNone, stepResend},
		{"held frame before new data", dueState(true, stepPull, stepHeld), stepNone, stepHeld},
		{"new data before a late ack", dueState(true, stepAck, stepPull), stepNone, stepPull},
		{"late ack before a ping", dueState(true, stepPing, stepAck), stepNone, stepAck},
		{"after urgent found nothing", dueState(true, stepUrgent, stepResend, stepPull), stepUrgent, stepResend},
		{"after pull found nothing", dueState(true, stepPull, stepPing), stepPull, stepPing},
		{"steps above are not picked again", dueState(true, stepPong, stepPull), stepPull, stepNone},
	} {
		if got := pick(c.st, c.after); got != c.want {
			t.Errorf("%s: pick after %v = %v; want %v", c.name, c.after, got, c.want)
		}
	}
}

// schedDriver is a driver that is never opened: the scheduler tests
// drive a conn by hand.
type schedDriver struct{ props Properties }

func (d schedDriver) Open(context.Context) (io.ReadWriteCloser, error) {
	return nil, errors.New("not opened in this test")
}
func (d schedDriver) Properties() Properties { return d.props }
func (d schedDriver) String() string         { return "sched test" }

// upConn is a conn with a session up, as the handshake leaves it, over a
// link whose upper layer sends up.send.
func upConn(t *testing.T, up *byteUpper, props Properties) *conn {
	t.Helper()
	l := New(schedDriver{props}, up, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	now := time.Now()
	c := &conn{l: l, lastRecv: now, lastSend: now, broken: make(chan struct{})}
	c.complete, c.roundDone = true, true
	l.cur = c
	l.established = true
	l.peerMax, l.peerWindow = l.cfg.MaxPayload, l.cfg.Window
	return c
}

// nextType runs the scheduler once and returns the type of the frame it
// sent (0: none).
func nextType(t *testing.T, c *conn) byte {
	t.Helper()
	out, _, _, err := c.next(nil, nil)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	if out == nil {
		return 0
	}
	dec, err := cobsDecode(nil, out[:len(out)-1])
	if err != nil {
		t.Fatalf("decoding what next sent: %v", err)
	}
	body, err := openFrame(dec)
	if err != nil {
		t.Fatalf("opening what next sent: %v", err)
	}
	return body[0]
}

func TestNextLadder(t *testing.T) {
	up := &byteUpper{send: []byte("new data")}
	c := upConn(t, up, Properties{})
	l := c.l
	c.pongDue, c.pongToken = true, 7
	c.ackDue, c.ackAt = true, time.Now()
	l.ooo[l.rxNext+1] = []byte("held out of order") // the ack carries a sack
	lost := getFrame(4)
	lost.raw = lost.raw[:dataHeader+4]
	lost.raw[0] = frameData
	l.sequence(lost)
	l.transmitted(lost, time.Now())
	lost.pending = true
	for i, want := range []byte{framePong, frameAck, frameData, frameData} {
		if got := nextType(t, c); got != want {
			t.Fatalf("frame %d: type %s; want %s", i, frameName(got), frameName(want))
		}
	}
	if !lost.resent || l.stats.FramesResent.Load() != 1 {
		t.Fatal("the lost frame did not go before new data")
	}
	if len(up.send) != 0 || l.nextSeq != 2 {
		t.Fatalf("upper left %q, next seq %d; want all pulled into frame 1", up.send, l.nextSeq)
	}
	// Nothing due: it waits, at most until the keepalive.
	out, wait, _, err := c.next(nil, nil)
	if out != nil || err != nil || wait <= 0 || wait > l.cfg.KeepAlive {
		t.Fatalf("idle next: %d bytes, wait %v, err %v; want a wait up to %v", len(out), wait, err, l.cfg.KeepAlive)
	}
	c.lastSend = time.Now().Add(-l.cfg.KeepAlive)
	if got := nextType(t, c); got != framePing {
		t.Fatalf("after a silent keepalive: %s; want ping", frameName(got))
	}
}

func TestNextHandshakeOnly(t *testing.T) {
	up := &byteUpper{send: []byte("must wait")}
	c := upConn(t, up, Properties{Reliable: true})
	c.complete, c.roundDone = false, false
	c.hsStart = time.Now()
	c.pongDue = true
	if got := nextType(t, c); got != frameHello {
		t.Fatalf("during the handshake: %s; want hello", frameName(got))
	}
	out, wait, _, err := c.next(nil, nil)
	if out != nil || err != nil || wait <= 0 || wait > helloInterval {
		t.Fatalf("after the hello: %d bytes, wait %v, err %v; want a wait up to the next hello", len(out), wait, err)
	}
	if len(up.send) == 0 || !c.pongDue {
		t.Fatal("data or a pong went out before the session was up")
	}
}

// classUpper returns payloads of the classes it is given, in turn, each
// filling the room it is offered, and records that room.
type classUpper struct {
	byteUpper
	classes []Class
	rooms   []int
}

func (u *classUpper) Fill(p []byte, budget int) (int, Class) {
	p = p[:budget]
	u.rooms = append(u.rooms, len(p))
	if len(u.classes) == 0 {
		return 0, ClassBulk
	}
	c := u.classes[0]
	u.classes = u.classes[1:]
	return copy(p, make([]byte, len(p))), c
}

// After an interactive payload a paced line carries short frames for a
// while; before one, and on an unpaced line, frames are full size.
func TestInteractiveClassKeepsFramesShort(t *testing.T) {
	for _, rate := range []int{11520, 0} {
		up := &classUpper{classes: []Class{ClassBulk, ClassInteractive, ClassBulk}}
		c := upConn(t, &up.byteUpper, Properties{LineRate: rate})
		c.l.up = up
		pull := func() *outFrame { // as next does, under l.mu
			c.l.mu.Lock()
			defer c.l.mu.Unlock()
			return c.pull()
		}
		for range 3 {
			if pull() == nil {
				t.Fatal("nothing pulled")
			}
		}
		full := min(c.l.payloadLimit(), c.l.sizeCap)
		short := c.shortFrame()
		if short >= full {
			t.Fatalf("rate %d: short frame %d not below full %d", rate, short, full)
		}
		want := []int{full, full, short}
		if rate == 0 {
			want = []int{full, full, full}
		}
		for i := range want {
			if up.rooms[i] != want[i] {
				t.Errorf("rate %d: rooms %v; want %v", rate, up.rooms, want)
				break
			}
		}
		c.l.lastInteractive = time.Now().Add(-interactiveSpell)
		pull()
		if got := up.rooms[3]; got != full {
			t.Errorf("rate %d: room %d after the spell; want %d", rate, got, full)
		}
	}
}

// A payload of class ClassBulkQuiet (no stream that talked can say more)
// ends the interactive spell at once: the frames after it are full size.
func TestBulkQuietEndsTheSpell(t *testing.T) {
	up := &classUpper{classes: []Class{ClassInteractive, ClassBulk, ClassBulkQuiet, ClassBulk}}
	c := upConn(t, &up.byteUpper, Properties{LineRate: 11520})
	c.l.up = up
	for range 4 {
		c.l.mu.Lock()
		f := c.pull()
		c.l.mu.Unlock()
		if f == nil {
			t.Fatal("nothing pulled")
		}
	}
	full, short := min(c.l.payloadLimit(), c.l.sizeCap), c.shortFrame()
	want := []int{full, short, short, full}
	if !slices.Equal(up.rooms, want) {
		t.Errorf("rooms %v; want %v (full %d, short %d)", up.rooms, want, full, short)
	}
	c.l.mu.Lock()
	about := c.l.interactiveAbout()
	c.l.mu.Unlock()
	if about {
		t.Error("the spell still runs after a quiet bulk payload")
	}
}

// readerUpper stands for the reader while the writer asks for data: its
// Fill (called with l.mu released) takes data frame 0, the one the
// receiver lacked, as the reader would, and offers nothing to send.
type readerUpper struct {
	byteUpper
	c    *conn
	when time.Time
}

func (u *readerUpper) Fill([]byte, int) (int, Class) {
	l := u.c.l
	l.mu.Lock()
	u.c.onData(l.rxNext, []byte("in order"), nil, u.when)
	l.mu.Unlock()
	return 0, ClassBulk
}

// An ack's bitmap is of the rxNext it carries, even when a frame arrived
// while the writer asked the upper layer for data in the same round: a
// bitmap from before, read against the new rxNext, claimed frames the
// peer lacked, and the sender never sent them again (a stall at BER 1e-2
// in TestFaultsVirtualTime, where the clock stands still within a round).
func TestAckBitmapOfItsRxNext(t *testing.T) {
	up := &readerUpper{}
	c := upConn(t, &up.byteUpper, Properties{LineRate: 11520})
	up.c, up.when = c, time.Now().Add(-time.Second) // the ack it schedules is due
	l := c.l
	l.up = up
	l.ooo[2] = []byte("held out of order") // frames 0 and 1 missing
	out, _, _, err := c.next(nil, nil)
	if err != nil || out == nil {
		t.Fatalf("next: %d bytes, err %v; want an ack", len(out), err)
	}
	dec, err := cobsDecode(nil, out[:len(out)-1])
	if err != nil {
		t.Fatal(err)
	}
	body, err := openFrame(dec)
	if err != nil || body[0] != frameAck {
		t.Fatalf("sent %s (err %v); want an ack", frameName(body[0]), err)
	}
	next, sack, err := parseAck(body)
	if err != nil {
		t.Fatal(err)
	}
	if next != 1 || sack != 1 {
		t.Fatalf("ack next %d sack %b; want next 1, sack 1 (frame 2 held)", next, sack)
	}
}
