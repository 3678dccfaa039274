//go:build unix

package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/proxy"
)

// webServer is an HTTP server that says who it is and what it was asked.
func webServer(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s: %s %s %s", name, r.Method, r.URL.RequestURI(), body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// socksClient is an HTTP client that goes through the SOCKS5 proxy at
// proxyAddr; its idle connections are closed when the test ends.
func socksClient(t *testing.T, proxyAddr string) *http.Client {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", proxyAddr, nil, proxy.Direct)
	require.NoError(t, err)
	tr := &http.Transport{DialContext: d.(proxy.ContextDialer).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func proxiedClient(proxyURL string) *http.Client {
	u, _ := url.Parse(proxyURL)
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// -D: a local SOCKS5/SOCKS4a/HTTP proxy whose destinations the far end
// connects to, driven by real clients.
func TestDynamicProxyWithRealClients(t *testing.T) {
	t.Parallel()
	web := webServer(t, "web")
	srv := transferServer(t)
	socksPort := freePort(t)
	_, con, _ := tcpPair(t, nil, []string{"-D", strPort(socksPort)})
	proxyAddr := addr(socksPort)

	t.Run("SOCKS5 client (golang.org/x/net/proxy)", func(t *testing.T) {
		status, body := get(t, socksClient(t, proxyAddr), web.URL+"/via-socks")
		assert.Equal(t, 200, status)
		assert.Equal(t, "web: GET /via-socks ", body)
	})
	t.Run("HTTP proxy client (net/http)", func(t *testing.T) {
		client := proxiedClient("http://" + proxyAddr)
		for _, path := range []string{"/one", "/two"} {
			status, body := get(t, client, web.URL+path)
			assert.Equal(t, 200, status)
			assert.Equal(t, "web: GET "+path+" ", body)
		}
		resp, err := client.Post(web.URL+"/form", "text/plain", strings.NewReader("a=1"))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "web: POST /form a=1", string(body))
	})
	t.Run("HTTPS through CONNECT (net/http)", func(t *testing.T) {
		tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "over TLS")
		}))
		defer tls.Close()
		tr := tls.Client().Transport.(*http.Transport).Clone()
		u, _ := url.Parse("http://" + proxyAddr)
		tr.Proxy = http.ProxyURL(u)
		status, body := get(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, tls.URL)
		assert.Equal(t, 200, status)
		assert.Equal(t, "over TLS", body)
	})
	t.Run("a refusal at the far end reaches the client", func(t *testing.T) {
		dead := addr(freePort(t))
		d, err := proxy.SOCKS5("tcp", proxyAddr, nil, proxy.Direct)
		require.NoError(t, err)
		_, err = d.Dial("tcp", dead)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "connection refused")
		status, body := get(t, proxiedClient("http://"+proxyAddr), "http://"+dead+"/")
		assert.Equal(t, http.StatusBadGateway, status)
		assert.Contains(t, body, "connection refused by "+dead)
		con.waitLog("far end refused the connection", 5*time.Second)
	})
	t.Run("large transfers through SOCKS5", func(t *testing.T) {
		d, err := proxy.SOCKS5("tcp", proxyAddr, nil, proxy.Direct)
		require.NoError(t, err)
		relay := socksRelay(t, d, addr(srv))
		require.NoError(t, transfer(relay, 4<<20, 4<<20, 77))
	})
	t.Run("curl", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("curl is not installed")
		}
		for _, args := range [][]string{
			{"-x", "socks5h://" + proxyAddr},
			{"-x", "socks5://" + proxyAddr},
			{"-x", "socks4a://" + proxyAddr},
			{"-x", "socks4://" + proxyAddr},
			{"-x", "http://" + proxyAddr},
			{"-p", "-x", "http://" + proxyAddr},
		} {
			body, status := curl(t, append(args, web.URL+"/curl")...)
			assert.Equal(t, "200", status, "%v", args)
			assert.Equal(t, "web: GET /curl ", body, "%v", args)
		}
		dead := addr(freePort(t))
		body, status := curl(t, "-x", "http://"+proxyAddr, "http://"+dead+"/")
		assert.Equal(t, "502", status)
		assert.Equal(t, "sockmux: connection refused by "+dead+"\n", body)
	})
}

// curl runs curl with args and returns the body and the status code.
func curl(t *testing.T, args ...string) (body, status string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--noproxy", "", "-w", "\n%{http_code}", "--max-time", "10"}, args...)...).Output()
	require.NoError(t, err, "curl %v: %s", args, out)
	i := strings.LastIndex(string(out), "\n")
	return string(out[:i]), string(out[i+1:])
}

// socksRelay listens on loopback and carries each connection to dest
// through the SOCKS dialer d, so that transfer() can run through it.
func socksRelay(t *testing.T, d proxy.Dialer, dest string) string {
	t.Helper()
	dial := func() (net.Conn, error) { return d.Dial("tcp", dest) }
	ln := relayLoopback(t, dial, func(c, up net.Conn) {
		defer c.Close()
		defer up.Close()
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(up, c)
			_ = up.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		_, _ = io.Copy(c, up)
		_ = c.(*net.TCPConn).CloseWrite()
		<-done
	})
	return ln.Addr().String()
}

// --server socks / --server http: the proxy runs at the exit, and clients
// reach it through an entrance at the other end (DeleGate's
// SERVER=socks,-in with PORT=).
func TestExitProxiesBehindEntrances(t *testing.T) {
	t.Parallel()
	web := webServer(t, "far web")
	socksEntrance, httpEntrance := freePort(t), freePort(t)
	tcpPair(t,
		[]string{"--port", fmt.Sprintf("%d,%d", socksEntrance, httpEntrance)},
		[]string{"--server", fmt.Sprintf("socks:-:-P%d", socksEntrance), "--server", fmt.Sprintf("http,-in:-:-P%d", httpEntrance)})
	status, body := get(t, socksClient(t, addr(socksEntrance)), web.URL+"/s")
	assert.Equal(t, 200, status)
	assert.Equal(t, "far web: GET /s ", body)

	status, body = get(t, proxiedClient("http://"+addr(httpEntrance)), web.URL+"/h")
	assert.Equal(t, 200, status)
	assert.Equal(t, "far web: GET /h ", body)
}
