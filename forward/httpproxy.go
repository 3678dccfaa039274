package forward

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// maxRequestHeader bounds what a client may send before its request's
// header ends.
const maxRequestHeader = 64 << 10

// upstream is the server an HTTP proxy client's plain requests go to; it
// is kept between requests to the same host.
type upstream struct {
	conn net.Conn
	br   *bufio.Reader
	dest string
}

// Close ends the connection to the server gracefully: it half-closes it
// and lets the server finish, so that neither end sees a reset.
func (u *upstream) Close() {
	if u == nil {
		return
	}
	closeWrite(u.conn)
	go func() {
		_ = u.conn.SetReadDeadline(time.Now().Add(upstreamDrain))
		_, _ = io.Copy(io.Discard, u.br)
		u.conn.Close()
	}()
}

// upstreamDrain bounds the wait for a server to finish after the proxy
// is done with it.
const upstreamDrain = 5 * time.Second

// serveHTTP serves an HTTP proxy client: CONNECT requests become a
// tunnel; requests for an absolute http:// URI are sent to the server in
// origin form and the responses sent back, keeping both connections open
// across requests (a request for another host opens a new connection to
// it).
func (p *proxySession) serveHTTP() {
	c := p.c
	var up *upstream
	defer func() { up.Close() }()
	for first := true; ; first = false {
		if !first {
			_ = c.SetReadDeadline(time.Now().Add(httpIdleTimeout))
		}
		c.limit(maxRequestHeader)
		req, err := http.ReadRequest(c.r)
		c.limit(-1)
		if err != nil {
			if first && !errors.Is(err, io.EOF) {
				p.log.Info("HTTP proxy request unreadable", "err", err)
				writeHTTPError(c, http.StatusBadRequest, "malformed request: "+err.Error())
			}
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		if req.Method == http.MethodConnect {
			up.Close()
			up = nil
			p.httpConnect(req)
			return
		}
		if req.URL.Scheme != "http" || req.URL.Host == "" {
			msg := "this is a proxy: ask for an absolute http:// URI, or use CONNECT"
			if req.URL.Scheme == "https" {
				msg = "use CONNECT for https:// URIs"
			}
			p.log.Info("HTTP proxy request refused", "method", req.Method, "uri", req.RequestURI, "reason", msg)
			writeHTTPError(c, http.StatusBadRequest, msg)
			return
		}
		dest := req.URL.Host
		if req.URL.Port() == "" {
			dest = net.JoinHostPort(req.URL.Hostname(), "80")
		}
		if up != nil && up.dest != dest {
			up.Close()
			up = nil
		}
		if up == nil {
			conn, err := p.connect(p.ctx, dest, "http")
			if err != nil {
				ce := asConnectError(err)
				writeHTTPError(c, httpStatus(ce), ce.reason)
				p.failed(ce, dest, "http")
				return
			}
			up = &upstream{conn: conn, br: bufio.NewReader(conn), dest: dest}
			p.log.Debug("proxy connected", "dest", dest, "proxy", "http")
		}
		keep, upgraded, err := p.relayRequest(req, up)
		if err != nil {
			p.log.Info("HTTP proxy request failed", "dest", dest, "err", err)
			return
		}
		if upgraded {
			p.carry(&bufConn{Conn: up.conn, r: up.br}, dest, "http-upgrade")
			up = nil
			return
		}
		if keep == keepNone {
			return
		}
		if keep == keepClient {
			up.Close()
			up = nil
		}
	}
}

// httpConnect serves a CONNECT request: a tunnel to the host and port
// asked for, opened once the destination has answered.
func (p *proxySession) httpConnect(req *http.Request) {
	c := p.c
	dest := req.Host
	if _, port, err := net.SplitHostPort(dest); err != nil || port == "" {
		writeHTTPError(c, http.StatusBadRequest, "CONNECT needs host:port, not "+dest)
		return
	}
	up, err := p.connect(p.ctx, dest, "http")
	if err != nil {
		ce := asConnectError(err)
		writeHTTPError(c, httpStatus(ce), ce.reason)
		p.failed(ce, dest, "http-connect")
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		up.Close()
		return
	}
	p.carry(up, dest, "http-connect")
}

// What stays open after a request.
const (
	keepNone   = iota // close both
	keepClient        // the server closes: keep the client only
	keepBoth
)

// relayRequest sends req to the server and its response to the client.
// It reports what may stay open after it, and whether the connection was
// upgraded (101), in which case both are to be joined.
func (p *proxySession) relayRequest(req *http.Request, up *upstream) (keep int, upgraded bool, err error) {
	c := p.c
	upgrade := req.Header.Get("Upgrade")
	removeHopHeaders(req.Header)
	if upgrade != "" {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", upgrade)
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // do not add Go's
	}
	sent := make(chan error, 1)
	go func() { sent <- req.Write(up.conn) }()
	var resp *http.Response
	for {
		resp, err = http.ReadResponse(up.br, req)
		if err != nil {
			writeHTTPError(c, http.StatusBadGateway, fmt.Sprintf("bad response from %s: %v", up.dest, err))
			up.conn.Close()
			return keepNone, false, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if err := writeHead(c, resp); err != nil { // 100 Continue and other interim responses
			return keepNone, false, err
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if err := writeHead(c, resp); err != nil {
			return keepNone, false, err
		}
		if err := <-sent; err != nil {
			return keepNone, false, err
		}
		return keepNone, true, nil
	}
	serverCloses := resp.Close
	removeHopHeaders(resp.Header)
	closeClient := req.Close || (resp.ContentLength < 0 && !isChunked(resp.TransferEncoding) && bodyAllowed(req, resp))
	if !req.ProtoAtLeast(1, 1) {
		// An HTTP/1.0 client gets no chunks: the body ends with the
		// connection.
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.0", 1, 0
		if isChunked(resp.TransferEncoding) {
			resp.TransferEncoding = nil
			closeClient = true
		}
	}
	resp.Close = closeClient
	err = resp.Write(c)
	resp.Body.Close()
	if err != nil {
		return keepNone, false, err
	}
	select {
	case err := <-sent:
		if err != nil {
			return keepNone, false, err
		}
	case <-time.After(time.Second):
		// The server answered without reading the whole request body:
		// neither connection is at a request boundary any more.
		return keepNone, false, nil
	}
	switch {
	case closeClient:
		return keepNone, false, nil
	case serverCloses:
		return keepClient, false, nil
	}
	return keepBoth, false, nil
}

// writeHead writes the status line and header of a response that has no
// body (1xx).
func writeHead(w io.Writer, resp *http.Response) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/%d.%d %s\r\n", resp.ProtoMajor, resp.ProtoMinor, resp.Status)
	_ = resp.Header.Write(&b)
	b.WriteString("\r\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// hopHeaders are the headers that concern one connection, not the
// request (RFC 9110 section 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

func isChunked(te []string) bool { return len(te) > 0 && te[0] == "chunked" }

// bodyAllowed reports whether resp, the answer to req, has a body.
func bodyAllowed(req *http.Request, resp *http.Response) bool {
	if req.Method == http.MethodHead {
		return false
	}
	s := resp.StatusCode
	return !(s >= 100 && s < 200 || s == http.StatusNoContent || s == http.StatusNotModified)
}

// writeHTTPError answers an HTTP proxy client with status and a one-line
// reason, and closes the exchange.
func writeHTTPError(w io.Writer, status int, reason string) {
	body := "sockmux: " + reason + "\n"
	_, _ = fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}
