package testutil

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Serve accepts connections on ln until ln is closed, which happens when
// the test ends, and runs handle on each in a goroutine of its own.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}

// ServeLoopback listens on a free TCP port of 127.0.0.1 and Serves the
// listener with handle.
func ServeLoopback(t testing.TB, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	Serve(t, ln, handle)
	return ln
}

// Port returns the port a TCP listener listens on.
func Port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// Echo is a handler that echoes every byte it reads until the client is
// done, then closes the connection.
func Echo(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(c, c)
}

// GreetThenEcho is a handler that writes greeting, then Echoes.
func GreetThenEcho(greeting string) func(net.Conn) {
	return func(c net.Conn) {
		_, _ = io.WriteString(c, greeting)
		Echo(c)
	}
}

// UDPReplyServer answers each datagram with prefix + the datagram, to the
// address it came from. It returns its address on 127.0.0.1 and stops when
// the test ends.
func UDPReplyServer(t testing.TB, prefix string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte(prefix), buf[:n]...), from)
		}
	}()
	return pc.LocalAddr().String()
}

// UDPRoundTrip sends msg on c until an answer comes, giving each try a
// second and retrying at most retries times (the first datagrams may be
// sent before a link's far end is ready, and UDP may lose them), and
// checks that the answer is want, whole.
func UDPRoundTrip(t testing.TB, c net.Conn, msg, want string, retries int) {
	t.Helper()
	buf := make([]byte, 65535)
	for try := 0; ; try++ {
		_, err := c.Write([]byte(msg))
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil {
			require.Equal(t, want, string(buf[:n]))
			return
		}
		if try == retries {
			t.Fatalf("no answer to a %d-byte datagram: %v", len(msg), err)
		}
	}
}
