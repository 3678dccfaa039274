package tcpdriver

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/link"
)

var (
	_ link.Driver    = (*Feed)(nil)
	_ link.Penalizer = (*Feed)(nil)
)

func TestAcceptorHandsToFeeds(t *testing.T) {
	a, err := ListenMany("127.0.0.1:0", AcceptOptions{})
	require.NoError(t, err)
	defer a.Close()
	feeds := map[byte]*Feed{'a': a.NewFeed("a"), 'b': a.NewFeed("b")}
	go a.Serve(func(c net.Conn) {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			c.Close()
			return
		}
		f, ok := feeds[b[0]]
		if !ok || f.Offer(Prefixed(c, b[:]), time.Second) != nil {
			c.Close()
		}
	})
	for _, name := range []byte{'a', 'b'} {
		c, err := net.Dial("tcp", a.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte{name, 'x'})
		require.NoError(t, err)
	}
	for _, name := range []byte{'b', 'a'} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t1, err := feeds[name].Open(ctx)
		cancel()
		require.NoError(t, err)
		var got [2]byte
		_, err = io.ReadFull(t1, got[:])
		require.NoError(t, err)
		assert.Equal(t, []byte{name, 'x'}, got[:], "the bytes the handler read come back first")
		assert.Contains(t, feeds[name].String(), "from 127.0.0.1:")
	}
	// A newer connection waiting replaces an older one; one not taken in
	// time is closed.
	c1, err := net.Dial("tcp", a.Addr().String())
	require.NoError(t, err)
	defer c1.Close()
	_, _ = c1.Write([]byte{'a', '1'})
	time.Sleep(100 * time.Millisecond)
	c2, err := net.Dial("tcp", a.Addr().String())
	require.NoError(t, err)
	defer c2.Close()
	_, _ = c2.Write([]byte{'a', '2'})
	_ = c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c1.Read(make([]byte, 1))
	assert.Error(t, err, "the older waiting connection is closed")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t2, err := feeds['a'].Open(ctx)
	cancel()
	require.NoError(t, err)
	var got [2]byte
	_, err = io.ReadFull(t2, got[:])
	require.NoError(t, err)
	assert.Equal(t, "a2", string(got[:]))
	// Penalties by name hold off that name only.
	feeds['a'].Penalize(t2.(net.Conn))
	assert.True(t, a.HeldName(c2.LocalAddr(), "A"))
	assert.False(t, a.HeldName(c2.LocalAddr(), "b"))
	feeds['a'].Close()
	_, err = feeds['a'].Open(context.Background())
	assert.ErrorIs(t, err, ErrFeedClosed)
}

func TestAcceptorBoundsPending(t *testing.T) {
	a, err := ListenMany("127.0.0.1:0", AcceptOptions{MaxPending: 2, HelloTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	defer a.Close()
	release := make(chan struct{})
	go a.Serve(func(c net.Conn) { <-release; c.Close() })
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", a.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		_, _ = c.Write([]byte{1})
		conns = append(conns, c)
		time.Sleep(30 * time.Millisecond)
	}
	require.Eventually(t, func() bool { return a.Stats().Busy == 3 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 2, a.Stats().Pending)
	close(release)
	require.Eventually(t, func() bool { return a.Stats().Pending == 0 }, 5*time.Second, 10*time.Millisecond)
	// A silent connection is dropped after HelloTimeout.
	c, err := net.Dial("tcp", a.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err)
	// A penalized source is refused at once.
	a.Penalize(conns[0])
	c2, err := net.Dial("tcp", a.Addr().String())
	require.NoError(t, err)
	defer c2.Close()
	require.Eventually(t, func() bool { return a.Stats().Penalized == 1 }, 5*time.Second, 10*time.Millisecond)
}
