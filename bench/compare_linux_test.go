//go:build linux

package bench

// The whole program against programs of the same shape, in the same run
// (issue 14): two sockmux link processes with -L against two yamux
// forwarder processes (bench/yamuxfwd) over one TCP connection, and with
// --secret-file against "ssh -L" to a private sshd with AES-128-GCM; each
// with one connection and with 64 at once.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// compareConns are the concurrent connections of the comparison rows.
var compareConns = []int{1, 64}

// compareResult holds the comparison rows' rates in bytes/s, by system
// ("sockmux", "yamux", "sockmux+secret", "ssh") and connection count, one
// per repetition, the systems interleaved within each repetition.
type compareResult struct {
	Rates   map[string]map[int][]float64
	SSH     string // ssh -V
	SSHSkip error  // why the ssh rows were not measured
}

func (r *compareResult) add(sys string, conns int, rate float64) {
	if r.Rates[sys] == nil {
		r.Rates[sys] = map[int][]float64{}
	}
	r.Rates[sys][conns] = append(r.Rates[sys][conns], rate)
}

// ratio is the median over repetitions of a/b, and the medians of each.
func (r *compareResult) ratio(a, b string, conns int) (ratio, ma, mb float64) {
	ra, rb := r.Rates[a][conns], r.Rates[b][conns]
	var rs []float64
	for i := range min(len(ra), len(rb)) {
		if rb[i] > 0 {
			rs = append(rs, ra[i]/rb[i])
		}
	}
	return median(rs), median(ra), median(rb)
}

// forwardPair is a running forwarder: connections to Addr reach the bulk
// source through two processes.
type forwardPair struct {
	Addr string
	stop func()
}

// runCompare starts each pair of forwarders and downloads through them,
// one system after the other within each repetition.
func (s *suite) runCompare(reps int, n int64) (*compareResult, error) {
	res := &compareResult{Rates: map[string]map[int][]float64{}}
	yfwd := filepath.Join(s.dir, "yamuxfwd")
	if out, err := exec.Command("go", "build", "-o", yfwd, "./yamuxfwd").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building bench/yamuxfwd: %v: %s", err, out)
	}
	systems := []struct {
		name  string
		start func() (*forwardPair, error)
	}{
		{"sockmux", func() (*forwardPair, error) { return s.sockmuxPair("cmp") }},
		{"yamux", func() (*forwardPair, error) { return s.yamuxPair(yfwd) }},
	}
	if s.secretFlag {
		key := filepath.Join(s.dir, "cmp.key")
		if out, err := exec.Command(s.bin, "keygen", key).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("keygen: %v: %s", err, out)
		}
		systems = append(systems, struct {
			name  string
			start func() (*forwardPair, error)
		}{"sockmux+secret", func() (*forwardPair, error) { return s.sockmuxPair("cmp-secret", "--secret-file", key) }})
		if v, err := exec.Command("ssh", "-V").CombinedOutput(); err != nil {
			res.SSHSkip = fmt.Errorf("no ssh client: %v", err)
		} else {
			res.SSH = strings.TrimSpace(string(v))
		}
		if _, err := exec.LookPath("/usr/sbin/sshd"); err != nil && res.SSHSkip == nil {
			res.SSHSkip = fmt.Errorf("no /usr/sbin/sshd (apt-get install openssh-server openssh-client)")
		}
		if res.SSHSkip == nil {
			systems = append(systems, struct {
				name  string
				start func() (*forwardPair, error)
			}{"ssh", s.sshPair})
		}
	}
	pairs := map[string]*forwardPair{}
	defer func() {
		for _, p := range pairs {
			p.stop()
		}
	}()
	for _, sys := range systems {
		p, err := sys.start()
		if err != nil {
			if sys.name == "ssh" {
				res.SSHSkip = err
				continue
			}
			return nil, fmt.Errorf("%s: %w", sys.name, err)
		}
		pairs[sys.name] = p
	}
	for range reps {
		for _, conns := range compareConns {
			for _, sys := range systems {
				p := pairs[sys.name]
				if p == nil {
					continue
				}
				rate, err := s.srv.downloadMany(p.Addr, conns, n, 2*time.Minute)
				if err != nil {
					return nil, fmt.Errorf("%s, %d connections: %w", sys.name, conns, err)
				}
				res.add(sys.name, conns, rate)
				s.logf("    %-15s %2d connections %8.1f MB/s", sys.name, conns, rate/1e6)
			}
		}
	}
	return res, nil
}

// downloadMany downloads n bytes in all through conns concurrent
// connections to addr and returns the aggregate rate: the bytes after each
// connection's first read, over the time from the first first byte to the
// last last byte.
func (sv *servers) downloadMany(addr string, conns int, n int64, timeout time.Duration) (float64, error) {
	var wg sync.WaitGroup
	results := make([]transferResult, conns)
	errs := make([]error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = sv.download(addr, n/int64(conns), timeout)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	first, last := results[0].First, results[0].Last
	var bytes int64
	for _, r := range results {
		if r.First.Before(first) {
			first = r.First
		}
		if r.Last.After(last) {
			last = r.Last
		}
		bytes += r.Bytes - r.FirstBytes
	}
	d := last.Sub(first).Seconds()
	if d <= 0 {
		return 0, fmt.Errorf("no time measured")
	}
	return float64(bytes) / d, nil
}

// sockmuxPair is two "sockmux link" processes over TCP loopback, link A
// forwarding a local port to the bulk source.
func (s *suite) sockmuxPair(name string, extra ...string) (*forwardPair, error) {
	linkAddr, addr, err := twoAddrs()
	if err != nil {
		return nil, err
	}
	lb, err := s.start(name+"-B", append([]string{"link", "--listen", linkAddr}, extra...)...)
	if err != nil {
		return nil, err
	}
	la, err := s.start(name+"-A", append([]string{"link", "--connect", linkAddr, "-L", port(addr) + ":" + s.srv.bulk.Addr().String()}, extra...)...)
	if err != nil {
		lb.stop()
		return nil, err
	}
	stop := func() { la.stop(); lb.stop() }
	if err := s.srv.waitReady(addr, 30*time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("%w\nlink A:\n%s\nlink B:\n%s", err, la.logTail(10), lb.logTail(10))
	}
	return &forwardPair{Addr: addr, stop: stop}, nil
}

// yamuxPair is the same with bench/yamuxfwd.
func (s *suite) yamuxPair(bin string) (*forwardPair, error) {
	linkAddr, addr, err := twoAddrs()
	if err != nil {
		return nil, err
	}
	b, err := s.startCmd("yamux-B", bin, "-listen", linkAddr)
	if err != nil {
		return nil, err
	}
	if err := waitListening(linkAddr, 10*time.Second); err != nil {
		b.stop()
		return nil, fmt.Errorf("%w\n%s", err, b.logTail(10))
	}
	a, err := s.startCmd("yamux-A", bin, "-connect", linkAddr, "-L", port(addr)+":"+s.srv.bulk.Addr().String())
	if err != nil {
		b.stop()
		return nil, err
	}
	stop := func() { a.stop(); b.stop() }
	if err := s.srv.waitReady(addr, 30*time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("%w\nA:\n%s\nB:\n%s", err, a.logTail(10), b.logTail(10))
	}
	return &forwardPair{Addr: addr, stop: stop}, nil
}

// sshPair is a private sshd on a loopback port (its own host key, config
// and authorized_keys in the suite's directory; the system's sshd is not
// touched) and "ssh -N -L" to it with AES-128-GCM.
func (s *suite) sshPair() (*forwardPair, error) {
	dir := filepath.Join(s.dir, "sshd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	hostKey, userKey := filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "user_ed25519")
	for _, k := range []string{hostKey, userKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		return nil, err
	}
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, pub, 0o600); err != nil {
		return nil, err
	}
	sshAddr, addr, err := twoAddrs()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(strings.Join([]string{
		"ListenAddress " + sshAddr,
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + auth,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin prohibit-password",
		"StrictModes no",
		"UsePAM no",
		"AllowTcpForwarding yes",
		"Ciphers aes128-gcm@openssh.com",
		"Compression no",
		"",
	}, "\n")), 0o600); err != nil {
		return nil, err
	}
	d, err := s.startCmd("sshd", "/usr/sbin/sshd", "-D", "-e", "-f", conf)
	if err != nil {
		return nil, err
	}
	if err := waitListening(sshAddr, 10*time.Second); err != nil {
		d.stop()
		return nil, fmt.Errorf("sshd: %w\n%s", err, d.logTail(10))
	}
	host, sport, _ := net.SplitHostPort(sshAddr)
	c, err := s.startCmd("ssh", "ssh", "-N", "-T",
		"-c", "aes128-gcm@openssh.com", "-o", "Compression=no",
		"-i", userKey, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-F", "/dev/null",
		"-o", "ExitOnForwardFailure=yes",
		"-L", "127.0.0.1:"+port(addr)+":"+s.srv.bulk.Addr().String(),
		"-p", sport, "root@"+host)
	if err != nil {
		d.stop()
		return nil, err
	}
	stop := func() { c.stop(); d.stop() }
	if err := s.srv.waitReady(addr, 30*time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("%w\nssh:\n%s\nsshd:\n%s", err, c.logTail(10), d.logTail(10))
	}
	return &forwardPair{Addr: addr, stop: stop}, nil
}

// twoAddrs are two free loopback addresses: a link's and a forward's.
func twoAddrs() (string, string, error) {
	a, err := freePort()
	if err != nil {
		return "", "", err
	}
	b, err := freePort()
	if err != nil {
		return "", "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", a), fmt.Sprintf("127.0.0.1:%d", b), nil
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// compareRows are the comparison rows of the report.
func (s *suite) compareRows(failed func(name, section, target string) bool) []row {
	var rows []row
	type want struct {
		a, b   string
		conns  int
		target float64
		name   string
		base   string
	}
	for _, w := range []want{
		{"sockmux", "yamux", 1, 1.10, "TCP loopback, whole program: two link processes, one connection through -L", "two yamux forwarder processes of the same shape (bench/yamuxfwd)"},
		{"sockmux", "yamux", 64, 1.10, "the same, 64 concurrent connections, aggregate", "the same yamux forwarder"},
		{"sockmux+secret", "ssh", 1, 1.0, "the same with --secret-file, one connection", "ssh -L over loopback, -c aes128-gcm@openssh.com"},
		{"sockmux+secret", "ssh", 64, 1.2, "the same with --secret-file, 64 concurrent connections", "the same ssh"},
	} {
		target := fmt.Sprintf("≥ %.2f × %s", w.target, w.b)
		if failed(w.name, "tcp-compare", target) {
			return rows
		}
		r := s.compare
		if r == nil {
			return rows
		}
		if w.b == "ssh" && len(r.Rates["ssh"][w.conns]) == 0 {
			why := "not measured"
			if r.SSHSkip != nil {
				why = strings.SplitN(r.SSHSkip.Error(), "\n", 2)[0]
			}
			rows = append(rows, row{w.name, "", w.base + ": " + why, "", target, "**not measured**"})
			continue
		}
		ratio, a, b := r.ratio(w.a, w.b, w.conns)
		rows = append(rows, row{w.name,
			fmt.Sprintf("%.0f MB/s", a/1e6),
			fmt.Sprintf("%s: %.0f MB/s", w.base, b/1e6),
			fmt.Sprintf("%.2f × %s", ratio, w.b), target, verdict(ratio >= w.target)})
	}
	return rows
}

// compareDetails is the comparison's paragraph of the details.
func (s *suite) compareDetails() string {
	r := s.compare
	if r == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "- **Whole program against yamux and ssh** (MB/s per repetition, the systems interleaved; 1 connection downloads the whole amount, 64 connections a 64th each at once):")
	for _, sys := range []string{"sockmux", "yamux", "sockmux+secret", "ssh"} {
		for _, c := range compareConns {
			if v := r.Rates[sys][c]; len(v) > 0 {
				fmt.Fprintf(&b, " %s ×%d: %s;", sys, c, floats(scale(v, 1e-6), "%.0f"))
			}
		}
	}
	if r.SSH != "" {
		fmt.Fprintf(&b, " ssh is %s, AES-128-GCM, no compression, to a private sshd on loopback", r.SSH)
	}
	if r.SSHSkip != nil {
		fmt.Fprintf(&b, " ssh not measured: %v", strings.SplitN(r.SSHSkip.Error(), "\n", 2)[0])
	}
	return strings.TrimSuffix(b.String(), ";") + ".\n"
}
