//go:build linux

package bench

// The small-device rows (issue 20): what a linked end costs in CPU,
// wake-ups and memory on a serial line, idle and while bulk data fills
// it, with OpenSSH + socat over the same cable as the anchor for CPU per
// MiB. SOCKMUX_BENCH_ONLY=^light runs just these sections.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// lightBauds are the line rates of the small-device rows.
var lightBauds = []int{115200, 921600}

// lightEnd is what one link end cost.
type lightEnd struct {
	IdleCPU      time.Duration // over lightResult.IdleWall
	IdleSwitches int64
	RSS          memUse // at the end of the idle period
	BulkCPU      time.Duration
	BulkSwitches int64
}

// memUse is a process's resident memory, from /proc/PID/status.
type memUse struct{ RSS, Anon, File int64 } // bytes

func (m memUse) String() string {
	return fmt.Sprintf("%.1f MiB (%.1f MiB anonymous, %.1f MiB of mapped files: the binary's code and data)",
		float64(m.RSS)/(1<<20), float64(m.Anon)/(1<<20), float64(m.File)/(1<<20))
}

// lightResult is one small-device section.
type lightResult struct {
	Baud      int
	IdleWall  time.Duration
	A, B      lightEnd // A receives the download, B sends it
	BulkBytes int64
	BulkWall  time.Duration // while CPU was counted
	Goodput   float64       // of the bulk download, bytes per second
	// The anchor: OpenSSH (ssh, sshd and its session processes) and the two
	// socat processes carrying it over the same cable, the same download.
	SSHCPU     map[string]time.Duration
	SSHBytes   int64
	SSHGoodput float64
	SSHErr     error
}

func (e lightEnd) idlePercent(wall time.Duration) float64 {
	return 100 * e.IdleCPU.Seconds() / wall.Seconds()
}

func (r *lightResult) perMiB(d time.Duration, bytes int64) float64 {
	return d.Seconds() / (float64(bytes) / (1 << 20))
}

func (r *lightResult) sshTotal() time.Duration {
	var t time.Duration
	for _, d := range r.SSHCPU {
		t += d
	}
	return t
}

// readMem reads pid's resident memory.
func readMem(pid int) memUse {
	var m memUse
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = kb << 10
		case "RssAnon":
			m.Anon = kb << 10
		case "RssFile":
			m.File = kb << 10
		}
	}
	return m
}

// treeCPU is the CPU time, user and system, of pid and every process
// below it now (sshd serves each connection in child processes).
func treeCPU(pid int) time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	parent := map[int]int{}
	cpu := map[int]time.Duration{}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		id, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		pp, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		parent[id] = pp
		cpu[id] = time.Duration(ut+st) * 10 * time.Millisecond
	}
	var total time.Duration
	for id, c := range cpu {
		for p := id; p > 1; p = parent[p] {
			if p == pid {
				total += c
				break
			}
		}
	}
	return total
}

// runLight measures one line rate: a cable, two link ends linked and idle,
// then a download through them; then OpenSSH through socat over the same
// cable carrying the same download.
func (s *suite) runLight(baud int) (*lightResult, error) {
	res := &lightResult{Baud: baud}
	name := fmt.Sprintf("light%d", baud)
	pathA, pathB := filepath.Join(s.dir, "tty"+name+"A"), filepath.Join(s.dir, "tty"+name+"B")
	cable, err := s.start("cable-"+name, "cable", "--baud", strconv.Itoa(baud), "--report-every", "0", pathA, pathB)
	if err != nil {
		return nil, err
	}
	defer cable.stop()
	for _, p := range []string{pathA, pathB} {
		if err := waitFile(p, 10*time.Second); err != nil {
			return nil, err
		}
	}
	bulkPort, err := freePort()
	if err != nil {
		return nil, err
	}
	b := strconv.Itoa(baud)
	linkA, err := s.start("link-"+name+"-A", "link", "--comm", pathA, "--baud", b, "--name", name+"A",
		"-L", fmt.Sprintf("%d:%s", bulkPort, s.srv.bulk.Addr()))
	if err != nil {
		return nil, err
	}
	defer linkA.stop()
	linkB, err := s.start("link-"+name+"-B", "link", "--comm", pathB, "--baud", b, "--name", name+"B")
	if err != nil {
		return nil, err
	}
	defer linkB.stop()
	bulkAddr := fmt.Sprintf("127.0.0.1:%d", bulkPort)
	if err := s.srv.waitReady(bulkAddr, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%w\nlink A:\n%s\nlink B:\n%s", err, linkA.logTail(10), linkB.logTail(10))
	}

	// Idle: linked, nothing to carry.
	idle := 30 * time.Second
	if s.quick {
		idle = 10 * time.Second
	}
	time.Sleep(2 * time.Second) // the first download's acknowledgements, the start's garbage collections
	cpuA, cpuB, swA, swB := linkA.cpuTime(), linkB.cpuTime(), linkA.ctxSwitches(), linkB.ctxSwitches()
	t0 := time.Now()
	time.Sleep(idle)
	res.IdleWall = time.Since(t0)
	res.A.IdleCPU, res.B.IdleCPU = linkA.cpuTime()-cpuA, linkB.cpuTime()-cpuB
	res.A.IdleSwitches, res.B.IdleSwitches = linkA.ctxSwitches()-swA, linkB.ctxSwitches()-swB
	res.A.RSS, res.B.RSS = readMem(linkA.cmd.Process.Pid), readMem(linkB.cmd.Process.Pid)
	s.logf("    idle %v: A %.3f %% CPU, %.1f wake-ups/s, %v; B %.3f %% CPU, %.1f wake-ups/s, %v",
		res.IdleWall.Round(time.Second), res.A.idlePercent(res.IdleWall), float64(res.A.IdleSwitches)/res.IdleWall.Seconds(), res.A.RSS,
		res.B.idlePercent(res.IdleWall), float64(res.B.IdleSwitches)/res.IdleWall.Seconds(), res.B.RSS)

	// Bulk: a download of 20 s of line time.
	secs := 20.0
	if s.quick {
		secs = 6
	}
	n := int64(secs * float64(baud) / 10)
	cpuA, cpuB, swA, swB = linkA.cpuTime(), linkB.cpuTime(), linkA.ctxSwitches(), linkB.ctxSwitches()
	t0 = time.Now()
	r, err := s.srv.download(bulkAddr, n, time.Duration(secs*4+30)*time.Second)
	if err != nil {
		return nil, fmt.Errorf("download through the cable: %w\nlink A:\n%s\nlink B:\n%s", err, linkA.logTail(10), linkB.logTail(10))
	}
	res.BulkWall = time.Since(t0)
	res.A.BulkCPU, res.B.BulkCPU = linkA.cpuTime()-cpuA, linkB.cpuTime()-cpuB
	res.A.BulkSwitches, res.B.BulkSwitches = linkA.ctxSwitches()-swA, linkB.ctxSwitches()-swB
	res.BulkBytes, res.Goodput = r.Bytes, r.Rate()
	s.logf("    bulk %d bytes at %.0f B/s: A %.2f s/MiB, %.0f wake-ups/s; B %.2f s/MiB, %.0f wake-ups/s", r.Bytes, r.Rate(),
		res.perMiB(res.A.BulkCPU, r.Bytes), float64(res.A.BulkSwitches)/res.BulkWall.Seconds(),
		res.perMiB(res.B.BulkCPU, r.Bytes), float64(res.B.BulkSwitches)/res.BulkWall.Seconds())
	linkA.stop()
	linkB.stop()
	// What the links left on the line must not reach ssh: a raw transfer
	// each way drains it first.
	for _, p := range [][2]string{{pathA, pathB}, {pathB, pathA}} {
		if _, err := rawThroughCable(p[0], p[1], baud, s.srv.pattern, int64(baud/10), true); err != nil {
			return nil, fmt.Errorf("draining the line: %w", err)
		}
	}

	res.SSHCPU, res.SSHBytes, res.SSHGoodput, res.SSHErr = s.sshCPUThroughCable(pathA, pathB, baud, n, time.Duration(secs*4+60)*time.Second)
	if res.SSHErr != nil {
		s.logf("    ssh: %v", res.SSHErr)
	} else {
		s.logf("    ssh + socat: %d bytes at %.0f B/s, %.2f s/MiB together (%v)", res.SSHBytes, res.SSHGoodput, res.perMiB(res.sshTotal(), res.SSHBytes), res.SSHCPU)
	}
	return res, nil
}

// ensureSSH installs OpenSSH and socat from the distribution's packages
// when they are missing and this process may (root, apt-get present).
func ensureSSH() error {
	missing := false
	for _, tool := range []string{"ssh", "ssh-keygen", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = true
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		if _, err := exec.LookPath("sshd"); err != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("OpenSSH or socat missing, and not root to install them (apt-get install openssh-server openssh-client socat)")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("OpenSSH or socat missing, and no apt-get to install them")
	}
	cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "openssh-server", "openssh-client", "socat")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install openssh-server openssh-client socat: %v: %s", err, lastLines(string(out), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// sshCPUThroughCable runs sshd behind socat on the cable's far end and ssh
// (no compression: the data is random) through socat on the near end,
// forwarding a port to the bulk source, and downloads n bytes through it.
// It returns the CPU time each part used during the download.
func (s *suite) sshCPUThroughCable(pathA, pathB string, baud int, n int64, timeout time.Duration) (map[string]time.Duration, int64, float64, error) {
	if err := ensureSSH(); err != nil {
		return nil, 0, 0, err
	}
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	dir := filepath.Join(s.dir, fmt.Sprintf("sshcpu%d", baud))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, 0, err
	}
	hostKey, userKey := filepath.Join(dir, "host_key"), filepath.Join(dir, "user_key")
	for _, k := range []string{hostKey, userKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k).CombinedOutput(); err != nil {
			return nil, 0, 0, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		return nil, 0, 0, err
	}
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, pub, 0o600); err != nil {
		return nil, 0, 0, err
	}
	_ = os.MkdirAll("/run/sshd", 0o755) // its privilege separation directory
	sshdPort, err := freePort()
	if err != nil {
		return nil, 0, 0, err
	}
	cfg := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf("Port %d\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\n"+
		"StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin yes\nCompression no\nAllowTcpForwarding yes\n",
		sshdPort, hostKey, auth, filepath.Join(dir, "sshd.pid"))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, 0, 0, err
	}
	d, err := s.startCmd(fmt.Sprintf("sshd-cpu-%d", baud), sshd, "-D", "-e", "-f", cfg)
	if err != nil {
		return nil, 0, 0, err
	}
	defer d.stop()
	if err := waitListening(fmt.Sprintf("127.0.0.1:%d", sshdPort), 10*time.Second); err != nil {
		return nil, 0, 0, fmt.Errorf("sshd: %w\n%s", err, d.logTail(10))
	}
	tty := func(p string) string { return fmt.Sprintf("FILE:%s,b%d,raw,echo=0", p, baud) }
	far, err := s.startCmd(fmt.Sprintf("socat-cpu-%d", baud), "socat", tty(pathB), fmt.Sprintf("TCP:127.0.0.1:%d", sshdPort))
	if err != nil {
		return nil, 0, 0, err
	}
	defer far.stop()
	port, err := freePort()
	if err != nil {
		return nil, 0, 0, err
	}
	user := "root"
	if u := os.Getenv("USER"); u != "" {
		user = u
	}
	client, err := s.startCmd(fmt.Sprintf("ssh-cpu-%d", baud), "ssh", "-N", "-o", "Compression=no",
		"-o", "ProxyCommand=socat - "+tty(pathA), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-i", userKey,
		"-L", fmt.Sprintf("%d:%s", port, s.srv.bulk.Addr()), user+"@cable")
	if err != nil {
		return nil, 0, 0, err
	}
	defer client.stop()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := s.srv.waitReady(addr, 120*time.Second); err != nil {
		return nil, 0, 0, fmt.Errorf("ssh forward: %w\nssh:\n%s\nsshd:\n%s", err, client.logTail(10), d.logTail(10))
	}
	time.Sleep(time.Second) // the handshake's and the first download's traffic
	parts := map[string]func() time.Duration{
		"ssh and its socat": func() time.Duration { return treeCPU(client.cmd.Process.Pid) },
		"sshd":              func() time.Duration { return treeCPU(d.cmd.Process.Pid) },
		"socat at sshd":     far.cpuTime,
	}
	c0 := map[string]time.Duration{}
	for k, f := range parts {
		c0[k] = f()
	}
	r, err := s.srv.download(addr, n, timeout)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("download through ssh: %w", err)
	}
	cpu := map[string]time.Duration{}
	for k, f := range parts {
		cpu[k] = f() - c0[k]
	}
	return cpu, r.Bytes, r.Rate(), nil
}

// runLightSections runs the small-device sections of the suite.
func (s *suite) runLightSections() {
	for _, baud := range lightBauds {
		s.section(fmt.Sprintf("light %d", baud), func() error {
			r, err := s.runLight(baud)
			if r != nil {
				s.light = append(s.light, r)
			}
			return err
		})
	}
}

// lightRows are the small-device rows of the report.
func (s *suite) lightRows(failed func(name, section, target string) bool) []row {
	var rows []row
	for _, baud := range lightBauds {
		section := fmt.Sprintf("light %d", baud)
		var r *lightResult
		for _, x := range s.light {
			if x.Baud == baud {
				r = x
			}
		}
		cpuName := fmt.Sprintf("small devices: CPU per MiB moved at %d baud, each end", baud)
		cpuTarget, cpuMax := "≤ 0.5 s, and below ssh + sshd + socat", 0.5
		if baud > 115200 {
			cpuTarget, cpuMax = "≤ 0.3 s", 0.3
		}
		if failed(cpuName, section, cpuTarget) || r == nil {
			continue
		}
		a, b := r.perMiB(r.A.BulkCPU, r.BulkBytes), r.perMiB(r.B.BulkCPU, r.BulkBytes)
		anchor, ratio := fmt.Sprintf("no OpenSSH anchor: %v", r.SSHErr), ""
		ok := max(a, b) <= cpuMax
		if r.SSHErr == nil {
			ssh := r.perMiB(r.sshTotal(), r.SSHBytes)
			anchor = fmt.Sprintf("ssh + sshd + 2 socat over the same cable, together: %.2f s/MiB (at %.0f B/s)", ssh, r.SSHGoodput)
			ratio = fmt.Sprintf("%.2f × ssh (the busier end)", max(a, b)/ssh)
			if baud == 115200 {
				ok = ok && max(a, b) < ssh
			}
		}
		rows = append(rows, row{cpuName,
			fmt.Sprintf("receiving end %.2f s/MiB, sending end %.2f s/MiB (download at %.0f B/s, %.3f of nominal)", a, b, r.Goodput, r.Goodput/(float64(baud)/10)),
			anchor, ratio, cpuTarget, verdict(ok)})
		if baud == 115200 {
			wa, wb := float64(r.A.BulkSwitches)/r.BulkWall.Seconds(), float64(r.B.BulkSwitches)/r.BulkWall.Seconds()
			rows = append(rows, row{"small devices: wake-ups per second while bulk fills the 115200 line, each end",
				fmt.Sprintf("receiving end %.0f/s, sending end %.0f/s", wa, wb), "", "", "≤ 300", verdict(max(wa, wb) <= 300)})
		}
		ia, ib := r.A.idlePercent(r.IdleWall), r.B.idlePercent(r.IdleWall)
		wa, wb := float64(r.A.IdleSwitches)/r.IdleWall.Seconds(), float64(r.B.IdleSwitches)/r.IdleWall.Seconds()
		rows = append(rows, row{fmt.Sprintf("small devices: idle linked end at %d baud, CPU and wake-ups", baud),
			fmt.Sprintf("A %.3f %% of a core, %.1f wake-ups/s; B %.3f %%, %.1f wake-ups/s (over %v)", ia, wa, ib, wb, r.IdleWall.Round(time.Second)),
			"", "", "≤ 0.02 % / ≤ 5", verdict(max(ia, ib) <= 0.02 && max(wa, wb) <= 5)})
		if baud == 115200 {
			m := max(r.A.RSS.RSS, r.B.RSS.RSS)
			rows = append(rows, row{"small devices: resident memory of an idle end (115200)",
				fmt.Sprintf("A %v; B %v", r.A.RSS, r.B.RSS), "", "", "≤ 8 MiB", verdict(m > 0 && m <= 8<<20)})
		}
	}
	const goodName = "small devices: bulk goodput, clean 115200, of the raw line rate"
	if r := s.serial["115200"]; r != nil && !failed(goodName, "serial 115200", "≥ 0.98") {
		got, raw := median(r.Sockmux), r.rawRate()
		rows = append(rows, row{goodName, fmt.Sprintf("%.0f B/s", got), fmt.Sprintf("raw bytes through the same cable: %.0f B/s", raw),
			fmt.Sprintf("%.3f", got/raw), "≥ 0.98", verdict(got/raw >= 0.98)})
	}
	return rows
}
