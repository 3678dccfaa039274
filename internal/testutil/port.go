package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
)

var ports struct {
	sync.Mutex
	given map[int]bool
}

// FreePort returns a loopback TCP port that nothing listens on now, that no
// earlier call in this process returned, and that lies below the system's
// ephemeral range, so that a listener on port 0 opened meanwhile (a test's
// own server) cannot be given the same port before the caller binds it.
// Where the ephemeral range leaves no room below it, it falls back to a
// port the system picks.
func FreePort() (int, error) {
	lo, hi := 10000, ephemeralLow()
	ports.Lock()
	defer ports.Unlock()
	if ports.given == nil {
		ports.given = map[int]bool{}
	}
	for range 1000 {
		if hi-lo < 1000 {
			break
		}
		p := lo + rand.IntN(hi-lo)
		if ports.given[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		ports.given[p] = true
		return p, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	p := Port(ln)
	ports.given[p] = true
	return p, nil
}

// ephemeralLow is the first port of the range the system hands out for
// port 0 (Linux's ip_local_port_range; 32768 where it cannot be read,
// below the BSDs' and macOS's 49152).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	var low int
	if err == nil {
		if _, err := fmt.Sscan(string(b), &low); err == nil && low > 0 {
			return low
		}
	}
	return 32768
}
