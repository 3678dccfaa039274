package forward

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// serveSOCKS5 serves a SOCKS5 client (RFC 1928): no authentication,
// CONNECT to an IPv4 or IPv6 address or a domain name.
func (p *proxySession) serveSOCKS5() {
	c := p.c
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		p.log.Info("SOCKS5 greeting cut short", "err", err)
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		p.log.Info("SOCKS5 greeting cut short", "err", err)
		return
	}
	if bytes.IndexByte(methods, 0x00) < 0 {
		_, _ = c.Write([]byte{5, 0xFF})
		p.log.Info("SOCKS5 client wants authentication, which this proxy does not offer", "methods", fmt.Sprintf("% x", methods))
		return
	}
	if _, err := c.Write([]byte{5, 0x00}); err != nil {
		return
	}
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		p.log.Info("SOCKS5 request cut short", "err", err)
		return
	}
	if req[0] != 5 {
		p.log.Info("SOCKS5 request with a bad version", "version", int(req[0]))
		return
	}
	dest, err := readSOCKS5Addr(c, req[3])
	if err != nil {
		p.log.Info("SOCKS5 request unreadable", "err", err)
		if err == errBadAddressType {
			_, _ = c.Write(socks5Response(socks5BadAddressType, nil))
		}
		return
	}
	if req[1] != 1 {
		_, _ = c.Write(socks5Response(socks5BadCommand, nil))
		p.log.Info("SOCKS5 command not supported (only CONNECT is)", "command", int(req[1]), "dest", dest)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	up, err := p.connect(p.ctx, dest, "socks5")
	if err != nil {
		ce := asConnectError(err)
		_, _ = c.Write(socks5Response(socks5Reply(ce), nil))
		p.failed(ce, dest, "socks5")
		return
	}
	if _, err := c.Write(socks5Response(socks5OK, up.LocalAddr())); err != nil {
		up.Close()
		return
	}
	p.carry(up, dest, "socks5")
}

var errBadAddressType = fmt.Errorf("address type not supported")

// readSOCKS5Addr reads a SOCKS5 address of type atyp and its port.
func readSOCKS5Addr(r io.Reader, atyp byte) (string, error) {
	var host string
	switch atyp {
	case 1, 4:
		b := make([]byte, map[byte]int{1: 4, 4: 16}[atyp])
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		a, _ := netip.AddrFromSlice(b)
		host = a.Unmap().String()
	case 3:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return "", err
		}
		b := make([]byte, n[0])
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		if len(b) == 0 {
			return "", fmt.Errorf("empty domain name")
		}
		host = string(b)
	default:
		return "", errBadAddressType
	}
	var port [2]byte
	if _, err := io.ReadFull(r, port[:]); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))), nil
}

// socks5Response is a SOCKS5 reply with the bound address, 0.0.0.0:0 when
// there is none (a stream).
func socks5Response(code byte, bound net.Addr) []byte {
	out := []byte{5, code, 0}
	ip, port := netip.IPv4Unspecified(), 0
	if ta, ok := bound.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			ip, port = a.Unmap(), ta.Port
		}
	}
	if ip.Is4() {
		out = append(out, 1)
	} else {
		out = append(out, 4)
	}
	out = append(out, ip.AsSlice()...)
	return binary.BigEndian.AppendUint16(out, uint16(port))
}

// SOCKS4 reply codes.
const (
	socks4Granted  = 90
	socks4Rejected = 91
)

// serveSOCKS4 serves a SOCKS4 or SOCKS4a client: CONNECT to an IPv4
// address, or (4a) to a name sent after the user id.
func (p *proxySession) serveSOCKS4() {
	c := p.c
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		p.log.Info("SOCKS4 request cut short", "err", err)
		return
	}
	if _, err := readCString(c.r); err != nil { // the user id, unused
		p.log.Info("SOCKS4 request unreadable", "err", err)
		return
	}
	port := binary.BigEndian.Uint16(req[2:4])
	ip := netip.AddrFrom4([4]byte(req[4:8]))
	host := ip.String()
	if req[4] == 0 && req[5] == 0 && req[6] == 0 && req[7] != 0 { // SOCKS4a
		name, err := readCString(c.r)
		if err != nil || name == "" {
			p.log.Info("SOCKS4a request without a host name", "err", err)
			_, _ = c.Write(socks4Response(socks4Rejected))
			return
		}
		host = name
	}
	dest := net.JoinHostPort(host, strconv.Itoa(int(port)))
	if req[1] != 1 {
		_, _ = c.Write(socks4Response(socks4Rejected))
		p.log.Info("SOCKS4 command not supported (only CONNECT is)", "command", int(req[1]), "dest", dest)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	up, err := p.connect(p.ctx, dest, "socks4")
	if err != nil {
		_, _ = c.Write(socks4Response(socks4Rejected))
		p.failed(asConnectError(err), dest, "socks4")
		return
	}
	if _, err := c.Write(socks4Response(socks4Granted)); err != nil {
		up.Close()
		return
	}
	p.carry(up, dest, "socks4")
}

func socks4Response(code byte) []byte { return []byte{0, code, 0, 0, 0, 0, 0, 0} }

// readCString reads a NUL-terminated string of at most 255 bytes.
func readCString(r io.ByteReader) (string, error) {
	var b []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == 0 {
			return string(b), nil
		}
		if len(b) == 255 {
			return "", fmt.Errorf("string longer than 255 bytes")
		}
		b = append(b, c)
	}
}
