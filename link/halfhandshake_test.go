package link

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// halfOpen is a driver whose first transport lets its link complete the
// handshake while the peer cannot: it swallows every hello that echoes the
// peer (without a key) or, once the link is up, everything (with a key,
// where the link is the initiator and completes first). Later transports
// pass everything.
type halfOpen struct {
	Driver
	keyed bool
	up    func() bool // the link completed its handshake
	opens atomic.Int32
}

func (d *halfOpen) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	t, err := d.Driver.Open(ctx)
	if err != nil || d.opens.Add(1) > 1 {
		return t, err
	}
	return halfOpenConn{t, d.keyed, d.up, &wireSplit{}}, nil
}

type halfOpenConn struct {
	io.ReadWriteCloser
	keyed bool
	up    func() bool
	split *wireSplit
}

func (f halfOpenConn) Write(b []byte) (int, error) {
	if f.keyed {
		if f.up() {
			return len(b), nil
		}
		return f.ReadWriteCloser.Write(b)
	}
	var keep []byte
	for _, u := range f.split.feed(b) {
		if u.frame != nil {
			if body, err := openFrame(u.frame); err == nil && body[0] == frameHello {
				if h, err := parseHello(body); err == nil && h.Echo != 0 {
					continue
				}
			}
		}
		keep = append(keep, u.enc...)
	}
	if _, err := f.ReadWriteCloser.Write(keep); err != nil {
		return 0, err
	}
	return len(b), nil
}

// TestHalfCompletedHandshakeGoesOn: one end completes the first handshake
// and queues data the other end cannot accept yet, then the transport
// drops before the other end completes. On the next transport the session
// goes on: nothing is reset, lost or duplicated.
func TestHalfCompletedHandshakeGoesOn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props Properties
		key   []byte
	}{
		{"reliable", Properties{Reliable: true}, nil},
		{"serial", Properties{LineRate: 11520}, nil},
		{"reliable keyed", Properties{Reliable: true}, key(3)},
		{"serial keyed", Properties{LineRate: 11520}, key(3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cable := newCable(tc.props, 7)
				cable.Rate = max(tc.props.LineRate, 1<<20)
				da, db := randomBytes(20<<10, 8), randomBytes(20<<10, 9)
				ua, ub := &byteUpper{send: da}, &byteUpper{send: db}
				// halfOpen drops frames it finds on the line: without FEC
				// blocks around them.
				cfg := Config{Secret: tc.key, Logger: quietLogger(), HandshakeTimeout: 3 * time.Second, FEC: FECOff}
				drv := &halfOpen{Driver: cable.end(0), keyed: tc.key != nil}
				a := New(drv, ua, cfg)
				b := New(cable.end(1), ub, cfg)
				if a.localID < b.localID {
					a.localID, b.localID = b.localID, a.localID // a initiates
				}
				drv.up = func() bool { return a.Stats().Sessions.Load() > 0 }
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{}, 2)
				for _, l := range []*Link{a, b} {
					go func() { _ = l.Run(ctx); done <- struct{}{} }()
				}
				for a.Stats().Sessions.Load() == 0 {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(500 * time.Millisecond) // a sends data b drops
				require.Zero(t, b.Stats().Sessions.Load(), "b completed on the first transport")
				cable.Cut()
				deadline := time.Now().Add(5 * time.Minute)
				for (ua.received() < len(db) || ub.received() < len(da)) && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				cancel()
				<-done
				<-done
				checkSame(t, da, ub.got)
				checkSame(t, db, ua.got)
				assert.Empty(t, ua.ends, "a's session was not ended")
				assert.Empty(t, ub.ends, "b's session was not ended")
				assert.Equal(t, uint64(1), a.Stats().Sessions.Load())
				assert.Equal(t, uint64(1), b.Stats().Sessions.Load())
			})
		})
	}
}

// TestStates: up while the session runs, resuming while a transport is
// open and the peer that had the session does not answer, closed at the
// end.
func TestStates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{LineRate: 11520}, 12)
		cable.Rate = 11520
		cfg := Config{Logger: quietLogger()}
		a := New(cable.end(0), &byteUpper{}, cfg)
		b := New(cable.end(1), &byteUpper{}, cfg)
		assert.Equal(t, StateWaiting, a.State())
		ctx, cancel := context.WithCancel(context.Background())
		ctxB, cancelB := context.WithCancel(ctx)
		done := make(chan struct{}, 2)
		go func() { _ = a.Run(ctx); done <- struct{}{} }()
		go func() { _ = b.Run(ctxB); done <- struct{}{} }()
		time.Sleep(time.Second)
		assert.Equal(t, StateUp, a.State())
		assert.Equal(t, "up", a.State().String())
		cancelB()
		<-done
		cable.Cut()
		time.Sleep(time.Second)
		assert.Equal(t, StateResuming, a.State())
		assert.Equal(t, "resuming", a.State().String())
		cancel()
		<-done
		assert.Equal(t, StateClosed, a.State())
	})
}
