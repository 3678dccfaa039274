package tcpdriver

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/link"
)

var (
	_ link.Driver    = (*Connector)(nil)
	_ link.Driver    = (*Receptor)(nil)
	_ link.Penalizer = (*Receptor)(nil)
)

// dialAndSpeak connects to r and sends one byte, as a connector does.
func dialAndSpeak(t *testing.T, r *Receptor, b byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", r.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Write([]byte{b})
	require.NoError(t, err)
	return c
}

func open(t *testing.T, r *Receptor, within time.Duration) (io.ReadWriteCloser, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return r.Open(ctx)
}

// The connection the link gets gives back the first byte, which the
// receptor read to see that the peer speaks.
func TestReceptorKeepsFirstByte(t *testing.T) {
	r, err := Listen("127.0.0.1:0", ListenOptions{})
	require.NoError(t, err)
	defer r.Close()
	c := dialAndSpeak(t, r, 'x')
	tr, err := open(t, r, 5*time.Second)
	require.NoError(t, err)
	defer tr.Close()
	_, err = c.Write([]byte("yz"))
	require.NoError(t, err)
	got := make([]byte, 3)
	_, err = io.ReadFull(tr, got)
	require.NoError(t, err)
	assert.Equal(t, "xyz", string(got))
	assert.Equal(t, "tcp listen "+r.Addr().String(), r.String())
	assert.True(t, r.Properties().Reliable)
}

// With Replace a new connection closes the one in use; without it the one
// in use stays until the link gives it up.
func TestReceptorReplace(t *testing.T) {
	for _, replace := range []bool{false, true} {
		r, err := Listen("127.0.0.1:0", ListenOptions{Replace: replace})
		require.NoError(t, err)
		dialAndSpeak(t, r, 1)
		first, err := open(t, r, 5*time.Second)
		require.NoError(t, err)
		_, err = io.ReadFull(first, make([]byte, 1)) // the byte it spoke first
		require.NoError(t, err)
		dialAndSpeak(t, r, 2)
		// The first transport breaks only when replacing.
		_ = first.(net.Conn).SetReadDeadline(time.Now().Add(time.Second))
		_, err = first.Read(make([]byte, 1))
		var ne net.Error
		timedOut := err != nil && errors.As(err, &ne) && ne.Timeout()
		assert.Equal(t, !replace, timedOut, "replace=%v: read on the first connection: %v", replace, err)
		second, err := open(t, r, 5*time.Second)
		require.NoError(t, err, "replace=%v", replace)
		second.Close()
		first.Close()
		r.Close()
	}
}

// A source whose peer failed authentication is refused for a while.
func TestReceptorPenalize(t *testing.T) {
	r, err := Listen("127.0.0.1:0", ListenOptions{})
	require.NoError(t, err)
	defer r.Close()
	dialAndSpeak(t, r, 1)
	tr, err := open(t, r, 5*time.Second)
	require.NoError(t, err)
	r.Penalize(tr)
	tr.Close()
	dialAndSpeak(t, r, 2)
	_, err = open(t, r, 300*time.Millisecond)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a penalized source is not admitted")
}

func TestConnectorRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	d := &Connector{Addr: addr, DialTimeout: time.Second}
	_, err = d.Open(context.Background())
	require.Error(t, err)
	assert.Equal(t, "tcp connect "+addr, d.String())
}

func TestListenBadAddress(t *testing.T) {
	_, err := Listen("127.0.0.1:notaport", ListenOptions{})
	require.Error(t, err)
}
