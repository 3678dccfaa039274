package link

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// Hello extensions: TLVs after the fixed part of a HELLO body, tag:1
// length:uvarint value. Unknown tags are skipped.
const (
	// extServices lists the services the sender serves over streams:
	// their names joined by commas (Config.Services).
	extServices = 0x01
	// extName is the name the sender gives (Config.Name): 1 to MaxName
	// bytes of letters, digits, '-' and '_'.
	extName = 0x02
)

// maxServicesLen bounds the services extension, ours and the peer's.
const maxServicesLen = 512

// checkServices validates Config.Services.
func checkServices(names []string) error {
	n := 0
	for _, s := range names {
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r == ',' || r <= ' ' || r > '~' }) {
			return fmt.Errorf("link: service name %q: want printable ASCII without spaces or commas", s)
		}
		n += len(s) + 1
	}
	if n > maxServicesLen {
		return fmt.Errorf("link: the service names take %d bytes, at most %d", n, maxServicesLen)
	}
	return nil
}

// appendHelloExt appends this end's hello extensions.
func appendHelloExt(dst []byte, services []string, name string, fecBlock int) []byte {
	if len(services) > 0 {
		v := strings.Join(services, ",")
		dst = append(dst, extServices)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	if name != "" {
		dst = append(dst, extName)
		dst = binary.AppendUvarint(dst, uint64(len(name)))
		dst = append(dst, name...)
	}
	if fecBlock > 0 {
		v := binary.AppendUvarint(nil, uint64(fecBlock))
		dst = append(dst, extFECBlock)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// helloExt returns the value of the first extension tagged tag; a
// malformed extension area ends the search.
func helloExt(ext []byte, tag byte) ([]byte, bool) {
	for len(ext) > 0 {
		t := ext[0]
		n, k := binary.Uvarint(ext[1:])
		if k <= 0 || n > uint64(len(ext)-1-k) {
			return nil, false
		}
		val := ext[1+k : 1+k+int(n)]
		ext = ext[1+k+int(n):]
		if t == tag {
			return val, true
		}
	}
	return nil, false
}

// helloServices reads the services extension of a peer's hello; a
// malformed extension area ends the reading (what was read stands).
func helloServices(ext []byte) []string {
	val, ok := helloExt(ext, extServices)
	if !ok || len(val) == 0 || len(val) > maxServicesLen {
		return nil
	}
	return strings.Split(string(val), ",")
}

// PeerServices are the services the peer of the current (or last)
// session named in its hello; nil before the first session and for a
// peer that serves none (a library end, or a sockmux from before
// services were named).
func (l *Link) PeerServices() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.peerServices)
}

// PeerServes reports whether the peer named service in its hello.
func (l *Link) PeerServes(service string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.peerServices, service)
}
