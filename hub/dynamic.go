package hub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/mux"
)

// Domain ends the host names a hub's -D proxy reaches peers by:
// HOST.PEER.sockmux is HOST (a name the peer resolves, or an address) at
// the peer called PEER.
const Domain = "sockmux"

// SplitHost splits a -D destination host of the form HOST.PEER.sockmux
// into HOST and PEER; ok is false for a host of another form. An IPv4
// address is written as it is (10.0.0.5.cab-17.sockmux); an IPv6 address
// cannot be written (a host name holds no ':').
func SplitHost(host string) (inner, peer string, ok bool) {
	rest, cut := strings.CutSuffix(strings.ToLower(strings.TrimSuffix(host, ".")), "."+Domain)
	if !cut {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	// The peer's name in its own case would be nicer, but a host name
	// has none: names are matched without regard to case.
	return host[:i], rest[i+1:], true
}

// AddDynamic starts a SOCKS5/SOCKS4a/HTTP proxy on bind (host:port) whose
// clients reach HOST:PORT at peer PEER by asking for HOST.PEER.sockmux:PORT.
// A peer that is not connected is waited for (its forwarder's link wait),
// then the client is refused with the reason.
func (h *Hub) AddDynamic(bind string) (net.Addr, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("-D %s: %w", bind, err)
	}
	h.mu.Lock()
	h.proxies = append(h.proxies, ln)
	h.mu.Unlock()
	entrance := 0
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		entrance = ta.Port
	}
	h.log.Info("forwarding", "forward", "-D "+ln.Addr().String()+" -> HOST.PEER."+Domain)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			client := c.RemoteAddr().String()
			go forward.ServeProxy(c, func(ctx context.Context, dest, proto string) (net.Conn, error) {
				return h.connect(ctx, dest, proto, client, entrance)
			}, h.log.With("client", client, "entrance", entrance))
		}
	}()
	return ln.Addr(), nil
}

// connect opens a -D client's connection to dest at the peer its host
// names.
func (h *Hub) connect(ctx context.Context, dest, proto, client string, entrance int) (net.Conn, error) {
	host, port, err := net.SplitHostPort(dest)
	if err != nil {
		return nil, forward.ConnectRefused(mux.CodeNoRoute, fmt.Sprintf("destination %q: %v", dest, err))
	}
	inner, peer, ok := SplitHost(host)
	if !ok {
		return nil, forward.ConnectRefused(mux.CodeNoRoute,
			fmt.Sprintf("%s names no peer: a hub's proxy reaches HOST at peer PEER as HOST.PEER.%s", host, Domain))
	}
	m, ok := h.Peer(peer)
	if !ok {
		return nil, forward.ConnectRefused(mux.CodeNoRoute, h.NoPeer(peer))
	}
	target := net.JoinHostPort(inner, port)
	c, err := m.Endpoint.Forwarder.Connect(ctx, target, proto, client, entrance)
	if err != nil && m.Endpoint.Link.UpSince().IsZero() {
		reason := fmt.Sprintf("peer %s is not connected: %v", m.Peer.Name, err)
		m.Endpoint.Logger().Warn("proxy client refused", "client", client, "dest", target, "reason", reason)
		return nil, forward.ConnectRefused(mux.CodeSessionEnded, reason)
	}
	return c, err
}
