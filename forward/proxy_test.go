package forward

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/proxy"

	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/mux"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// echoServer echoes each connection back, prefixed by greeting.
func echoServer(t *testing.T, network, greeting string) string {
	t.Helper()
	ln, err := net.Listen(network, map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network])
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	testutil.Serve(t, ln, testutil.GreetThenEcho(greeting))
	return ln.Addr().String()
}

// deadPort is a loopback address nothing listens on.
func deadPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := ln.Addr().String()
	ln.Close()
	return a
}

// proxyServer runs the built-in proxy kind on a loopback port, connecting
// with connect (by default: dialling, as an exit does).
func proxyServer(t *testing.T, kind ProxyKind, connect connectFunc) (addr string, accepted *atomic.Int32) {
	t.Helper()
	if connect == nil {
		f := New(nil, Config{DialTimeout: 3 * time.Second, Logger: quiet()})
		connect = f.dialConnect
	}
	accepted = new(atomic.Int32)
	ln := testutil.ServeLoopback(t, func(c net.Conn) {
		accepted.Add(1)
		serveProxy(context.Background(), c, kind, connect, quiet())
	})
	return ln.Addr().String(), accepted
}

func roundTrip(t *testing.T, c net.Conn, greeting string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(greeting))
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, greeting, string(buf))
	_, err = io.WriteString(c, "ping")
	require.NoError(t, err)
	buf = make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
}

func TestSOCKS5ConnectsByAddressAndName(t *testing.T) {
	paddr, _ := proxyServer(t, ProxySOCKS, nil)
	d, err := proxy.SOCKS5("tcp", paddr, nil, proxy.Direct)
	require.NoError(t, err)
	v4 := echoServer(t, "tcp4", "v4")
	c, err := d.Dial("tcp", v4)
	require.NoError(t, err)
	roundTrip(t, c, "v4")
	c.Close()

	_, port, _ := net.SplitHostPort(v4)
	c, err = d.Dial("tcp", "localhost:"+port) // a domain name, resolved by the proxy
	require.NoError(t, err)
	roundTrip(t, c, "v4")
	c.Close()

	v6 := echoServer(t, "tcp6", "v6")
	c, err = d.Dial("tcp", v6)
	require.NoError(t, err)
	roundTrip(t, c, "v6")
	c.Close()
}

func TestSOCKS5ReportsRefusal(t *testing.T) {
	paddr, _ := proxyServer(t, ProxySOCKS, nil)
	d, err := proxy.SOCKS5("tcp", paddr, nil, proxy.Direct)
	require.NoError(t, err)
	_, err = d.Dial("tcp", deadPort(t))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
}

// socks5Raw sends a SOCKS5 greeting and request and returns the reply code.
func socks5Raw(t *testing.T, paddr string, greeting, req []byte) byte {
	t.Helper()
	c, err := net.Dial("tcp", paddr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Write(greeting)
	require.NoError(t, err)
	var hello [2]byte
	_, err = io.ReadFull(c, hello[:])
	require.NoError(t, err)
	if hello[1] != 0 {
		return hello[1]
	}
	_, err = c.Write(req)
	require.NoError(t, err)
	var rep [4]byte
	_, err = io.ReadFull(c, rep[:])
	require.NoError(t, err)
	return rep[1]
}

func TestSOCKS5ProtocolErrors(t *testing.T) {
	paddr, _ := proxyServer(t, ProxySOCKS, nil)
	noAuth := []byte{5, 1, 0}
	assert.Equal(t, byte(0xFF), socks5Raw(t, paddr, []byte{5, 1, 2}, nil), "username/password only")
	bind := []byte{5, 2, 0, 1, 127, 0, 0, 1, 0, 80}
	assert.Equal(t, byte(socks5BadCommand), socks5Raw(t, paddr, noAuth, bind))
	badType := []byte{5, 1, 0, 9}
	assert.Equal(t, byte(socks5BadAddressType), socks5Raw(t, paddr, noAuth, badType))
	host, port, _ := net.SplitHostPort(deadPort(t))
	p, _ := strconv.Atoi(port)
	refused := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	refused = binary.BigEndian.AppendUint16(refused, uint16(p))
	assert.Equal(t, byte(socks5Refused), socks5Raw(t, paddr, noAuth, refused))
}

func TestSOCKS5ReplyCodes(t *testing.T) {
	for _, tc := range []struct {
		ce   connectError
		want byte
	}{
		{connectError{code: mux.CodeRefused}, 0x05},
		{connectError{code: mux.CodeUnreachable, reason: "cannot resolve x: no such host"}, 0x04},
		{connectError{code: mux.CodeUnreachable, reason: netUnreachable + " 10.0.0.1:80: x"}, 0x03},
		{connectError{code: mux.CodeTimeout}, 0x06},
		{connectError{code: mux.CodeDenied}, 0x02},
		{connectError{code: mux.CodeNoRoute}, 0x02},
		{connectError{code: mux.CodeSessionEnded}, 0x01},
		{connectError{code: mux.CodeLimit}, 0x01},
	} {
		assert.Equal(t, tc.want, socks5Reply(&tc.ce), "%v %s", tc.ce.code, tc.ce.reason)
	}
	for _, tc := range []struct {
		code mux.ResetCode
		want int
	}{
		{mux.CodeRefused, 502}, {mux.CodeUnreachable, 502}, {mux.CodeTimeout, 504},
		{mux.CodeDenied, 403}, {mux.CodeNoRoute, 403}, {mux.CodeSessionEnded, 502},
	} {
		assert.Equal(t, tc.want, httpStatus(&connectError{code: tc.code}), "%v", tc.code)
	}
}

func TestDialFailureCodes(t *testing.T) {
	code, reason := DialFailure("h:1", &net.DNSError{Name: "h", Err: "no such host", IsNotFound: true})
	assert.Equal(t, mux.CodeUnreachable, code)
	assert.Contains(t, reason, "cannot resolve h")
	code, reason = DialFailure("10.0.0.1:80", &DeniedError{Dest: "10.0.0.1:80"})
	assert.Equal(t, mux.CodeDenied, code)
	assert.Contains(t, reason, "not allowed")
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: &timeoutErr{}}
	code, _ = DialFailure("h:1", timeout)
	assert.Equal(t, mux.CodeTimeout, code)
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// socks4 sends a SOCKS4(a) CONNECT and returns the reply code and conn.
func socks4(t *testing.T, paddr string, ip [4]byte, port int, host string) (byte, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", paddr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := []byte{4, 1}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	req = append(req, ip[:]...)
	req = append(req, "user\x00"...)
	if host != "" {
		req = append(req, host+"\x00"...)
	}
	_, err = c.Write(req)
	require.NoError(t, err)
	var rep [8]byte
	_, err = io.ReadFull(c, rep[:])
	require.NoError(t, err)
	return rep[1], c
}

func TestSOCKS4AndSOCKS4a(t *testing.T) {
	paddr, _ := proxyServer(t, ProxySOCKS, nil)
	echo := echoServer(t, "tcp4", "hi")
	_, ps, _ := net.SplitHostPort(echo)
	port, _ := strconv.Atoi(ps)
	code, c := socks4(t, paddr, [4]byte{127, 0, 0, 1}, port, "")
	require.Equal(t, byte(socks4Granted), code)
	roundTrip(t, c, "hi")
	code, c = socks4(t, paddr, [4]byte{0, 0, 0, 1}, port, "localhost")
	require.Equal(t, byte(socks4Granted), code)
	roundTrip(t, c, "hi")
	_, dp, _ := net.SplitHostPort(deadPort(t))
	dead, _ := strconv.Atoi(dp)
	code, _ = socks4(t, paddr, [4]byte{127, 0, 0, 1}, dead, "")
	assert.Equal(t, byte(socks4Rejected), code)
}

func TestProxyRejectsOtherProtocols(t *testing.T) {
	paddr, _ := proxyServer(t, ProxySOCKS, nil)
	c, err := net.Dial("tcp", paddr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte{0x16, 3, 1, 0, 0}) // a TLS ClientHello
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err, "the connection is closed")
}

func TestHTTPProxyPlainRequestsKeepAlive(t *testing.T) {
	var serverConns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Proxy-Header", r.Header.Get("Proxy-Connection"))
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // no Content-Length: chunked
		}
		fmt.Fprintf(w, "%s %s %s", r.Method, r.Host, body)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			serverConns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	paddr, accepted := proxyServer(t, ProxySOCKS, nil)
	purl, _ := url.Parse("http://" + paddr)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(purl)}, Timeout: 10 * time.Second}

	for i, path := range []string{"/a?x=1", "/chunked", "/b"} {
		resp, err := client.Get(srv.URL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "GET "+srv.Listener.Addr().String()+" ", string(body), "request %d", i)
		assert.Equal(t, path, resp.Header.Get("X-Seen-Path"), "origin form upstream")
		assert.Empty(t, resp.Header.Get("X-Proxy-Header"))
	}
	resp, err := client.Post(srv.URL+"/p", "text/plain", strings.NewReader("payload"))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "POST "+srv.Listener.Addr().String()+" payload", string(body))

	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/e", strings.NewReader("continued"))
	req.Header.Set("Expect", "100-continue")
	resp, err = client.Do(req)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "PUT "+srv.Listener.Addr().String()+" continued", string(body))

	resp, err = client.Head(srv.URL + "/h")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	assert.Equal(t, int32(1), accepted.Load(), "one connection to the proxy for every request")
	assert.Equal(t, int32(1), serverConns.Load(), "one connection to the server for every request")
}

func TestHTTPProxyConnectTunnelsTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "secret")
	}))
	defer srv.Close()
	paddr, _ := proxyServer(t, ProxySOCKS, nil)
	purl, _ := url.Parse("http://" + paddr)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(purl)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "secret", string(body))
}

func TestHTTPProxyErrors(t *testing.T) {
	paddr, _ := proxyServer(t, ProxySOCKS, nil)
	purl, _ := url.Parse("http://" + paddr)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(purl)}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + deadPort(t) + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Contains(t, string(body), "connection refused by")

	for _, tc := range []struct{ request, status string }{
		{"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"GET https://x/ HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"CONNECT nohostport HTTP/1.1\r\nHost: nohostport\r\n\r\n", "400"},
		{"BREW\r\n\r\n", "400"},
	} {
		c, err := net.Dial("tcp", paddr)
		require.NoError(t, err)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, tc.request)
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		assert.Contains(t, line, " "+tc.status+" ", tc.request)
	}
}

func TestHTTPProxyStatusFromFarEnd(t *testing.T) {
	for _, tc := range []struct {
		code   mux.ResetCode
		status int
	}{{mux.CodeTimeout, 504}, {mux.CodeNoRoute, 403}, {mux.CodeUnreachable, 502}} {
		connect := func(context.Context, string, string) (net.Conn, error) {
			return nil, &connectError{code: tc.code, reason: "test " + tc.code.String(), remote: true}
		}
		paddr, _ := proxyServer(t, ProxySOCKS, connect)
		purl, _ := url.Parse("http://" + paddr)
		client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(purl)}, Timeout: 10 * time.Second}
		resp, err := client.Get("http://example.invalid/")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, tc.status, resp.StatusCode)
		assert.Contains(t, string(body), "test "+tc.code.String())
	}
}

func TestTelnetProxyPrompt(t *testing.T) {
	paddr, _ := proxyServer(t, ProxyTelnet, nil)
	echo := echoServer(t, "tcp4", "welcome\r\n")
	host, port, _ := net.SplitHostPort(echo)
	c, err := net.Dial("tcp", paddr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	readUntil := func(s string) string {
		t.Helper()
		var got strings.Builder
		for !strings.HasSuffix(got.String(), s) {
			b, err := r.ReadByte()
			require.NoError(t, err, "waiting for %q after %q", s, got.String())
			got.WriteByte(b)
		}
		return got.String()
	}
	readUntil(telnetPrompt)
	// A telnet client's option negotiation, a typo fixed with backspace,
	// and a dead port first.
	_, _ = c.Write([]byte{telnetIAC, telnetDO, 1, telnetIAC, telnetSB, 24, 1, telnetIAC, telnetSE})
	_, _ = fmt.Fprintf(c, "%s %s\r\n", host, strings.Split(deadPort(t), ":")[1])
	assert.Contains(t, readUntil(telnetPrompt), "cannot connect to")
	_, _ = io.WriteString(c, "nonsense with words\r\n")
	assert.Contains(t, readUntil(telnetPrompt), "type a host and a port")
	_, _ = fmt.Fprintf(c, "telnet %s %sx\x7f\r\n", host, port)
	assert.Contains(t, readUntil("welcome\r\n"), "-- connected to "+echo)
	_, _ = io.WriteString(c, "echo me")
	assert.Equal(t, "echo me", readUntil("echo me"))
}

func TestParseTelnetDest(t *testing.T) {
	for in, want := range map[string]string{
		"example.org":          "example.org:23",
		"example.org 2323":     "example.org:2323",
		"example.org:80":       "example.org:80",
		"open example.org 25":  "example.org:25",
		"[::1]:22":             "[::1]:22",
		"::1 22":               "[::1]:22",
		"  telnet  host   23 ": "host:23",
	} {
		got, err := parseTelnetDest(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	for _, in := range []string{"a b c", "host 0", "host 70000", "host nosuchservice"} {
		_, err := parseTelnetDest(in)
		assert.Error(t, err, in)
	}
	_, err := parseTelnetDest("quit")
	assert.True(t, errors.Is(err, errTelnetQuit))
}
