package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sockmux/sockmux/mux"
)

// The built-in proxies serve two places with the same code: an exit
// (--server socks, --server telnet), where the client is a stream from
// the far end and connect dials here, and -D, where the client is a local
// connection and connect opens a stream whose open frame names the
// destination, then waits for the far end to accept or refuse it.

// connectFunc connects a proxy's client to dest ("host:port"); proto names
// the client's protocol ("socks5", "socks4", "http", "telnet"). A failure
// is a *connectError.
type connectFunc func(ctx context.Context, dest, proto string) (net.Conn, error)

// connectError says why a proxy could not connect, in the terms of the
// mux's reset codes, which the proxies turn into their own replies.
type connectError struct {
	code   mux.ResetCode
	reason string
	remote bool // the far end refused (-D)
}

func (e *connectError) Error() string { return e.reason }

// asConnectError makes any error a *connectError.
func asConnectError(err error) *connectError {
	var ce *connectError
	if errors.As(err, &ce) {
		return ce
	}
	return &connectError{code: mux.CodeClosed, reason: err.Error()}
}

const (
	// proxyHandshakeTimeout bounds reading a SOCKS or HTTP request.
	proxyHandshakeTimeout = 30 * time.Second
	// telnetPromptTimeout bounds a user's silence at the telnet prompt.
	telnetPromptTimeout = 5 * time.Minute
	// httpIdleTimeout bounds the wait for the next request on a kept-alive
	// HTTP proxy connection.
	httpIdleTimeout = 2 * time.Minute
)

// proxySession is one client of a built-in proxy.
type proxySession struct {
	ctx     context.Context
	c       *bufConn
	connect connectFunc
	log     *slog.Logger
}

// serveProxy serves one client c of the built-in proxy kind until the
// client's connection ends; it logs what happens and closes c.
func serveProxy(ctx context.Context, c net.Conn, kind ProxyKind, connect connectFunc, log *slog.Logger) {
	p := &proxySession{ctx: ctx, c: newBufConn(c), connect: connect, log: log}
	defer c.Close()
	if kind == ProxyTelnet {
		p.serveTelnet()
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(proxyHandshakeTimeout))
	first, err := p.c.r.Peek(1)
	if err != nil {
		log.Info("proxy client sent nothing", "err", err)
		return
	}
	switch b := first[0]; {
	case b == 5:
		p.serveSOCKS5()
	case b == 4:
		p.serveSOCKS4()
	case b >= 'A' && b <= 'Z':
		p.serveHTTP()
	default:
		log.Info("proxy client speaks neither SOCKS nor HTTP", "first_byte", int(b))
		abort(c, "not a SOCKS or HTTP proxy request")
	}
}

// connected logs a proxied connection and carries it until it ends.
func (p *proxySession) carry(up net.Conn, dest, proto string) {
	log := p.log.With("dest", dest, "proxy", proto)
	log.Debug("proxy connected")
	sent, received, err := join(p.c, up)
	if err != nil {
		log.Info("connection ended", "err", err, "sent", sent, "received", received)
	} else {
		log.Debug("connection closed", "sent", sent, "received", received)
	}
}

// failed logs a connect failure.
func (p *proxySession) failed(ce *connectError, dest, proto string) {
	msg := "proxy destination unreachable"
	if ce.remote {
		msg = "far end refused the connection"
	}
	p.log.Info(msg, "dest", dest, "proxy", proto, "code", ce.code.String(), "reason", ce.reason)
}

// SOCKS5 reply codes (RFC 1928 section 6).
const (
	socks5OK              = 0x00
	socks5GeneralFailure  = 0x01
	socks5NotAllowed      = 0x02
	socks5NetUnreachable  = 0x03
	socks5HostUnreachable = 0x04
	socks5Refused         = 0x05
	socks5TTLExpired      = 0x06
	socks5BadCommand      = 0x07
	socks5BadAddressType  = 0x08
)

// socks5Reply is the SOCKS5 reply code for a connect failure: refused →
// 0x05, unreachable → 0x04 (host) or 0x03 (network), timeout → 0x06 (as
// Dante and others report ETIMEDOUT), denied or no route → 0x02, anything
// else → 0x01.
func socks5Reply(ce *connectError) byte {
	switch ce.code {
	case mux.CodeRefused:
		return socks5Refused
	case mux.CodeUnreachable:
		if strings.HasPrefix(ce.reason, netUnreachable) {
			return socks5NetUnreachable
		}
		return socks5HostUnreachable
	case mux.CodeTimeout:
		return socks5TTLExpired
	case mux.CodeDenied, mux.CodeNoRoute:
		return socks5NotAllowed
	}
	return socks5GeneralFailure
}

// httpStatus is the HTTP proxy's status for a connect failure: 504 for a
// timeout, 403 when denied or no rule routes it, 502 otherwise.
func httpStatus(ce *connectError) int {
	switch ce.code {
	case mux.CodeTimeout:
		return http.StatusGatewayTimeout
	case mux.CodeDenied, mux.CodeNoRoute:
		return http.StatusForbidden
	}
	return http.StatusBadGateway
}
