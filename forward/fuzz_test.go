package forward

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sockmux/sockmux/mux"
)

// The parsers and the proxies take input from users and from any client
// that reaches an entrance: none may panic or hang on it.

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"tcp://h:1", "telnet://h,-in:-:-P9023", "h:1:-:{10.0.0.0/8,!a}", "socks",
		"[::1]:80", "tcprelay://h:-/", "udp://h:53:-:-P1-2,*.x", "x,-in(a)", ":-::-:", "[", "h:+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		_ = r.String()
		_, _ = r.Target(mux.Info{Entrance: 80})
		// Matches is left out: host names in a rule are looked up.
	})
}

func FuzzParseEntrances(f *testing.F) {
	for _, s := range []string{"9023,9080", "*:1-3/udp", "[::1]:80", "h:53/udp", "::",
		"127.0.0.1:9011,127.0.0.1:9012", "9011,127.0.0.1:9012,[::1]:9013/udp", "h:1-4,5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := ParseEntrances(s)
		if err != nil {
			return
		}
		if len(fs) > maxEntrances {
			t.Fatalf("%d entrances", len(fs))
		}
		for _, e := range fs {
			_, port, err := net.SplitHostPort(e.Bind)
			if err != nil {
				t.Fatalf("%q gives bind %q: %v", s, e.Bind, err)
			}
			if _, err := ParsePort(port, false); err != nil {
				t.Fatalf("%q gives bind %q: %v", s, e.Bind, err)
			}
		}
	})
}

func FuzzProxy(f *testing.F) {
	for _, s := range []string{"\x05\x01\x00\x05\x01\x00\x03\x01a\x00\x50", "\x04\x01\x00\x50\x00\x00\x00\x01u\x00h\x00",
		"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", "CONNECT h:1 HTTP/1.1\r\n\r\n", "\xff\xfd\x01h 23\r\n", "\x05\x00"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	refuse := func(context.Context, string, string) (net.Conn, error) {
		return nil, &connectError{code: mux.CodeRefused, reason: "refused"}
	}
	f.Fuzz(func(t *testing.T, input string, telnet bool) {
		client, server := net.Pipe()
		kind := ProxySOCKS
		if telnet {
			kind = ProxyTelnet
		}
		done := make(chan struct{})
		go func() {
			serveProxy(context.Background(), server, kind, refuse, quiet())
			close(done)
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = client.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(client, input)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the proxy hangs on a closed client")
		}
	})
}
