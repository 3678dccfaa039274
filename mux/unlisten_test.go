package mux

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sockmux/sockmux/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// listenLog records the listen and close requests a mux served, in order.
type listenLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *listenLog) add(op string, req ListenRequest) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, fmt.Sprintf("%s %s %d", op, req.Bind, req.Tag))
	return nil
}

func (l *listenLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ops...)
}

// UnlistenRemote asks the far end to close the listener now, in order
// with later listen requests, and the request is not sent again at the
// next session.
func TestUnlistenRemote(t *testing.T) {
	var log listenLog
	cfg := Config{
		OnListen:   func(r ListenRequest) error { return log.add("listen", r) },
		OnUnlisten: func(r ListenRequest) error { return log.add("close", r) },
	}
	a, b, _ := newPair(t, 4096, cfg)
	require.NoError(t, a.ListenRemote(ListenRequest{Network: "tcp", Bind: "127.0.0.1:8080", Tag: 1}))
	require.NoError(t, a.ListenRemote(ListenRequest{Network: "tcp", Bind: "127.0.0.1:9090", Tag: 2}))
	require.Eventually(t, func() bool { return len(log.get()) == 2 }, 5*time.Second, time.Millisecond)
	assert.True(t, a.UnlistenRemote(1))
	require.NoError(t, a.ListenRemote(ListenRequest{Network: "tcp", Bind: "[::]:8080", Tag: 3}))
	assert.False(t, a.UnlistenRemote(1), "already withdrawn")
	require.Eventually(t, func() bool { return len(log.get()) == 4 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []string{"listen 127.0.0.1:8080 1", "listen 127.0.0.1:9090 2", "close 127.0.0.1:8080 1", "listen [::]:8080 3"}, log.get())

	// A new session repeats only the requests still standing.
	a.SessionEnd(nil)
	b.SessionEnd(nil)
	b.SessionStart(link.SessionInfo{Local: 3, Peer: 4})
	a.SessionStart(link.SessionInfo{Local: 4, Peer: 3})
	require.Eventually(t, func() bool { return len(log.get()) == 6 }, 5*time.Second, time.Millisecond)
	assert.ElementsMatch(t, []string{"listen 127.0.0.1:9090 2", "listen [::]:8080 3"}, log.get()[4:])
}

// A close request for a listener the far end never had opened, or after
// the limit, is refused with an answer; it opens nothing and cannot be
// used to get around MaxListens.
func TestHostileUnlisten(t *testing.T) {
	var log listenLog
	h := newHostile(t, Config{MaxListens: 2,
		OnListen:   func(r ListenRequest) error { return log.add("listen", r) },
		OnUnlisten: func(r ListenRequest) error { return log.add("close", r) },
	})
	for i := range 1000 {
		h.send(unlistenMessage(ListenRequest{Network: "tcp", Bind: "127.0.0.1:1", Tag: uint64(i)}))
		h.send(listenMessage(ListenRequest{Network: "tcp", Bind: "127.0.0.1:0", Tag: uint64(1000 + i)}))
		require.NoError(t, h.flush())
		h.drain()
	}
	require.Eventually(t, func() bool { return len(log.get()) == 2 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, []string{"listen 127.0.0.1:0 1000", "listen 127.0.0.1:0 1001"}, log.get())
	// Closing one of them makes room for one more.
	h.send(unlistenMessage(ListenRequest{Network: "tcp", Bind: "127.0.0.1:0", Tag: 1000}))
	h.send(listenMessage(ListenRequest{Network: "tcp", Bind: "127.0.0.1:0", Tag: 5000}))
	h.send(listenMessage(ListenRequest{Network: "tcp", Bind: "127.0.0.1:0", Tag: 5001}))
	require.NoError(t, h.flush())
	require.Eventually(t, func() bool { return len(log.get()) == 4 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, []string{"close 127.0.0.1:0 1000", "listen 127.0.0.1:0 5000"}, log.get()[2:])
}

// A listener that opens while its session ends is closed again: the
// session's end cannot have closed a listener that did not exist yet.
func TestListenRacingSessionEnd(t *testing.T) {
	var log listenLog
	opening, release := make(chan struct{}), make(chan struct{})
	cfg := Config{
		OnListen: func(r ListenRequest) error {
			close(opening)
			<-release // the listener is being opened while the session ends
			return log.add("listen", r)
		},
		OnUnlisten: func(r ListenRequest) error { return log.add("close", r) },
	}
	a, b, _ := newPair(t, 4096, cfg)
	require.NoError(t, a.ListenRemote(ListenRequest{Network: "tcp", Bind: "127.0.0.1:8080", Tag: 1}))
	<-opening
	b.SessionEnd(nil)
	close(release)
	require.Eventually(t, func() bool { return len(log.get()) == 2 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []string{"listen 127.0.0.1:8080 1", "close 127.0.0.1:8080 1"}, log.get())
}
