//go:build linux

package bench

// The compression rows: goodput on real text over the virtual cable,
// against OpenSSH with compression over the same cable (sshd behind socat
// on the far tty), random bytes against the line rate, the echo while a
// compressible download fills the line, and TCP loopback with default
// flags against --compress off.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// compressResult is what a compression case measured.
type compressResult struct {
	Baud       int
	Nominal    float64
	Raw        float64 // raw bytes through the cable, B/s
	CorpusSize int
	Text       []float64 // sockmux goodput on the text corpus
	Random     []float64 // sockmux goodput on random bytes
	RandomOff  []float64 // the same with --compress off at both ends
	SSH        []float64 // ssh -C goodput on the text corpus
	SSHErr     error     // why there is no ssh baseline
	Ratio      string    // the sending link's compression over the text downloads, from sockmux status
	Echo       *echoResult
}

// textCorpus is n bytes of text nobody here wrote: half Go's own source
// (net/http), a quarter logs (/var/log), a quarter JSON (Go's test data);
// each part topped up from the Go source tree when the others are short.
func textCorpus(n int) ([]byte, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %w", err)
	}
	goroot := filepath.Join(strings.TrimSpace(string(out)), "src")
	collect := func(root, suffix string, limit int) []byte {
		var files []string
		_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.Mode().IsRegular() && strings.HasSuffix(p, suffix) {
				files = append(files, p)
			}
			return nil
		})
		sort.Strings(files)
		var b []byte
		for _, f := range files {
			if d, err := os.ReadFile(f); err == nil {
				b = append(b, d...)
			}
			if len(b) >= limit {
				return b[:limit]
			}
		}
		return b
	}
	c := collect(filepath.Join(goroot, "net", "http"), ".go", n/2)
	c = append(c, collect("/var/log", ".log", n/4)...)
	c = append(c, collect(filepath.Join(goroot, "crypto"), ".json", n/4)...)
	if len(c) < n {
		c = append(c, collect(filepath.Join(goroot, "go"), ".go", n-len(c))...)
	}
	if len(c) < n {
		return nil, fmt.Errorf("text corpus: found %d of %d bytes", len(c), n)
	}
	return c[:n], nil
}

// startPatternServers starts a bulk source and an echo server whose
// every download carries pattern (from its start).
func startPatternServers(pattern []byte) (*servers, error) {
	bulk, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		bulk.Close()
		return nil, err
	}
	sv := &servers{bulk: bulk, echo: echo, pattern: pattern, fixed: true}
	go serve(bulk, sv.serveBulk)
	go serve(echo, sv.serveEcho)
	return sv, nil
}

// runCompress measures one baud rate.
func (s *suite) runCompress(baud int, corpusSize int, echo bool) (*compressResult, error) {
	res := &compressResult{Baud: baud, Nominal: float64(baud) / 10, CorpusSize: corpusSize}
	corpus, err := textCorpus(corpusSize)
	if err != nil {
		return nil, err
	}
	text, err := startPatternServers(corpus)
	if err != nil {
		return nil, err
	}
	defer text.close()
	pathA, pathB := filepath.Join(s.dir, fmt.Sprintf("ztty%dA", baud)), filepath.Join(s.dir, fmt.Sprintf("ztty%dB", baud))
	cable, err := s.start(fmt.Sprintf("zcable-%d", baud), "cable", "--baud", strconv.Itoa(baud), "--report-every", "0", pathA, pathB)
	if err != nil {
		return nil, err
	}
	defer cable.stop()
	for _, p := range []string{pathA, pathB} {
		if err := waitFile(p, 10*time.Second); err != nil {
			return nil, err
		}
	}
	r, err := rawThroughCable(pathA, pathB, baud, s.srv.pattern, int64(8*res.Nominal), true)
	if err != nil {
		return nil, fmt.Errorf("raw baseline: %w", err)
	}
	res.Raw = r.Rate()
	s.logf("    raw  %8.0f B/s", res.Raw)
	reps := s.reps(2)

	// sockmux, default flags.
	textPort, randPort, echoPort := 0, 0, 0
	for _, p := range []*int{&textPort, &randPort, &echoPort} {
		if *p, err = freePort(); err != nil {
			return nil, err
		}
	}
	b := strconv.Itoa(baud)
	linkA, err := s.start(fmt.Sprintf("zlink-%d-A", baud), "link", "--comm", pathA, "--baud", b,
		"-L", fmt.Sprintf("%d:%s", textPort, text.bulk.Addr()),
		"-L", fmt.Sprintf("%d:%s", randPort, s.srv.bulk.Addr()),
		"-L", fmt.Sprintf("%d:%s", echoPort, text.echo.Addr()))
	if err != nil {
		return nil, err
	}
	defer linkA.stop()
	control := filepath.Join(s.dir, fmt.Sprintf("zlink-%d-B.sock", baud))
	linkB, err := s.start(fmt.Sprintf("zlink-%d-B", baud), "link", "--comm", pathB, "--baud", b, "--control", control)
	if err != nil {
		return nil, err
	}
	defer linkB.stop()
	textAddr, randAddr := fmt.Sprintf("127.0.0.1:%d", textPort), fmt.Sprintf("127.0.0.1:%d", randPort)
	if err := text.waitReady(textAddr, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%w\nlink A:\n%s\nlink B:\n%s", err, linkA.logTail(10), linkB.logTail(10))
	}
	timeout := time.Duration(float64(corpusSize)/res.Nominal*2+30) * time.Second
	for range reps {
		r, err := text.download(textAddr, int64(corpusSize), timeout)
		if err != nil {
			return nil, fmt.Errorf("text through sockmux: %w", err)
		}
		res.Text = append(res.Text, r.Rate())
		s.logf("    sockmux text   %8.0f B/s (%.2f x line; from the request: %.0f B/s)", r.Rate(), r.Rate()/res.Raw, wholeRate(r))
	}
	if ratio, err := s.compressionStatus(control); err == nil {
		res.Ratio = ratio
	}
	// One download of random bytes: a second one would repeat the
	// first's bytes, which the history may still hold.
	randN := int64(20 * res.Nominal)
	for range 1 {
		r, err := s.srv.download(randAddr, randN, time.Duration(float64(randN)/res.Nominal*2+30)*time.Second)
		if err != nil {
			return nil, fmt.Errorf("random through sockmux: %w", err)
		}
		res.Random = append(res.Random, r.Rate())
		s.logf("    sockmux random %8.0f B/s (%.3f x line)", r.Rate(), r.Rate()/res.Raw)
	}
	if echo {
		// The echo's bulk download comes from the text source.
		saved := s.srv
		s.srv = text
		res.Echo, err = s.echo(textAddr, fmt.Sprintf("127.0.0.1:%d", echoPort), res.Nominal)
		s.srv = saved
		if err != nil {
			return nil, fmt.Errorf("echo: %w", err)
		}
	}
	linkA.stop()
	linkB.stop()

	// Random bytes again with --compress off at both ends, for comparison.
	offA, err := s.start(fmt.Sprintf("zlink-%d-A-off", baud), "link", "--comm", pathA, "--baud", b, "--compress", "off",
		"-L", fmt.Sprintf("%d:%s", randPort, s.srv.bulk.Addr()))
	if err != nil {
		return nil, err
	}
	defer offA.stop()
	offB, err := s.start(fmt.Sprintf("zlink-%d-B-off", baud), "link", "--comm", pathB, "--baud", b, "--compress", "off")
	if err != nil {
		return nil, err
	}
	defer offB.stop()
	if err := s.srv.waitReady(randAddr, 30*time.Second); err != nil {
		return nil, fmt.Errorf("--compress off: %w", err)
	}
	for range 1 {
		r, err := s.srv.download(randAddr, randN, time.Duration(float64(randN)/res.Nominal*2+30)*time.Second)
		if err != nil {
			return nil, fmt.Errorf("random through sockmux --compress off: %w", err)
		}
		res.RandomOff = append(res.RandomOff, r.Rate())
		s.logf("    sockmux random, --compress off %8.0f B/s (%.3f x line)", r.Rate(), r.Rate()/res.Raw)
	}
	offA.stop()
	offB.stop()
	// What the links left on the line must not reach ssh: a raw transfer
	// each way drains it first.
	for _, p := range [][2]string{{pathA, pathB}, {pathB, pathA}} {
		if _, err := rawThroughCable(p[0], p[1], baud, s.srv.pattern, int64(res.Nominal), true); err != nil {
			return nil, fmt.Errorf("draining the line: %w", err)
		}
	}

	// OpenSSH with compression over the same cable.
	res.SSH, res.SSHErr = s.sshThroughCable(pathA, pathB, baud, text, corpusSize, reps, timeout)
	if res.SSHErr != nil {
		s.logf("    ssh: %v", res.SSHErr)
	}
	return res, nil
}

// sshThroughCable runs sshd behind socat on the cable's far end, and an
// ssh client with compression whose connection goes through socat on the
// near end, forwarding a port to the text source; it returns the goodput
// of downloads of n bytes through that forward.
func (s *suite) sshThroughCable(pathA, pathB string, baud int, text *servers, n, reps int, timeout time.Duration) ([]float64, error) {
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	for _, tool := range []string{sshd, "ssh", "ssh-keygen", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("no %s (apt-get install openssh-server openssh-client socat)", tool)
		}
	}
	dir := filepath.Join(s.dir, fmt.Sprintf("ssh%d", baud))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	hostKey, userKey := filepath.Join(dir, "host_key"), filepath.Join(dir, "user_key")
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
	_ = os.MkdirAll("/run/sshd", 0o755) // its privilege separation directory
	sshdPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf("Port %d\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\n"+
		"StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin yes\nCompression yes\nAllowTcpForwarding yes\n",
		sshdPort, hostKey, auth, filepath.Join(dir, "sshd.pid"))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	// sshd -D serves connections as they come, not just one (unlike -i).
	d, err := s.startCmd(fmt.Sprintf("sshd-%d", baud), sshd, "-D", "-e", "-f", cfg)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	if err := waitListening(fmt.Sprintf("127.0.0.1:%d", sshdPort), 10*time.Second); err != nil {
		return nil, fmt.Errorf("sshd: %w\n%s", err, d.logTail(10))
	}
	tty := func(p string) string { return fmt.Sprintf("FILE:%s,b%d,raw,echo=0", p, baud) }
	far, err := s.startCmd(fmt.Sprintf("socat-%d", baud), "socat", tty(pathB), fmt.Sprintf("TCP:127.0.0.1:%d", sshdPort))
	if err != nil {
		return nil, err
	}
	defer far.stop()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	user := "root"
	if u := os.Getenv("USER"); u != "" {
		user = u
	}
	client, err := s.startCmd(fmt.Sprintf("ssh-%d", baud), "ssh", "-N", "-C", "-o", "Compression=yes",
		"-o", "ProxyCommand=socat - "+tty(pathA), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-i", userKey,
		"-L", fmt.Sprintf("%d:%s", port, text.bulk.Addr()), user+"@cable")
	if err != nil {
		return nil, err
	}
	defer client.stop()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := text.waitReady(addr, 120*time.Second); err != nil {
		return nil, fmt.Errorf("ssh forward: %w\nssh:\n%s\nsshd:\n%s", err, client.logTail(10), d.logTail(10))
	}
	var rates []float64
	for range reps {
		r, err := text.download(addr, int64(n), timeout)
		if err != nil {
			return nil, fmt.Errorf("text through ssh -C: %w", err)
		}
		rates = append(rates, r.Rate())
		s.logf("    ssh -C text    %8.0f B/s (from the request: %.0f B/s)", r.Rate(), wholeRate(r))
	}
	return rates, nil
}

// compressionStatus reads the compression ratio of what a link sent
// from its control socket.
func (s *suite) compressionStatus(control string) (string, error) {
	out, err := exec.Command(s.bin, "status", "--control", control, "--json").Output()
	if err != nil {
		return "", err
	}
	var st struct {
		PayloadOut    float64 `json:"payload_out"`
		CompressedOut float64 `json:"compressed_out"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return "", err
	}
	if st.CompressedOut == 0 {
		return "", errors.New("nothing sent")
	}
	return fmt.Sprintf("compressed %.2f×", st.PayloadOut/st.CompressedOut), nil
}

// wholeRate is a transfer's goodput from the request to the last byte:
// unlike Rate it counts the bytes of the first read and the time they
// took, which a sender of large packets (ssh's are up to 32 KiB of plain
// text, seconds of a slow line) delivers all at once.
func wholeRate(r transferResult) float64 {
	d := r.Last.Sub(r.Start).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(r.Bytes) / d
}

// waitListening waits until something accepts connections at addr.
func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens at %s after %v", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tcpCompressResult compares TCP loopback with default flags and with
// --compress off, in alternating runs.
type tcpCompressResult struct {
	Default, Off []float64 // goodput, B/s
}

func (s *suite) runTCPCompress(reps int, n int64) (*tcpCompressResult, error) {
	res := &tcpCompressResult{}
	run := func(name string, extra ...string) (float64, error) {
		lport, err := freePort()
		if err != nil {
			return 0, err
		}
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		linkAddr := fmt.Sprintf("127.0.0.1:%d", lport)
		lb, err := s.start(name+"-B", append([]string{"link", "--listen", linkAddr}, extra...)...)
		if err != nil {
			return 0, err
		}
		defer lb.stop()
		la, err := s.start(name+"-A", append([]string{"link", "--connect", linkAddr, "-L", fmt.Sprintf("%d:%s", port, s.srv.bulk.Addr())}, extra...)...)
		if err != nil {
			return 0, err
		}
		defer la.stop()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := s.srv.waitReady(addr, 30*time.Second); err != nil {
			return 0, err
		}
		r, err := s.srv.download(addr, n, 2*time.Minute)
		if err != nil {
			return 0, err
		}
		s.logf("    %s %8.1f MB/s", name, r.Rate()/1e6)
		return r.Rate(), nil
	}
	for i := range reps {
		// Alternate which goes first, so that a trend in the machine's
		// load does not favour one.
		var d, o float64
		var err error
		if i%2 == 0 {
			if d, err = run("ztcp-default"); err == nil {
				o, err = run("ztcp-off", "--compress", "off")
			}
		} else if o, err = run("ztcp-off", "--compress", "off"); err == nil {
			d, err = run("ztcp-default")
		}
		if err != nil {
			return nil, err
		}
		res.Default, res.Off = append(res.Default, d), append(res.Off, o)
	}
	return res, nil
}

// compressRows are the compression rows of the report.
func (s *suite) compressRows(failed func(name, section, target string) bool) []row {
	var rows []row
	for _, baud := range compressBauds {
		r := s.compress[baud]
		name := fmt.Sprintf("compression: goodput on text (Go source, logs, JSON), virtual cable %d", baud)
		if failed(name, fmt.Sprintf("compress %d", baud), "≥ 1.15 × ssh -C") || r == nil {
			continue
		}
		got := median(r.Text)
		if len(r.SSH) > 0 {
			ssh := median(r.SSH)
			rows = append(rows, row{name,
				fmt.Sprintf("%.0f B/s (%.2f × line; %s)", got, got/r.Raw, r.Ratio),
				fmt.Sprintf("OpenSSH -C -L over the same cable: %.0f B/s (%.2f × line)", ssh, ssh/r.Raw),
				fmt.Sprintf("%.2f", got/ssh), "≥ 1.15", verdict(got/ssh >= 1.15)})
		} else {
			rows = append(rows, row{name, fmt.Sprintf("%.0f B/s (%.2f × line)", got, got/r.Raw),
				fmt.Sprintf("no ssh baseline: %v", r.SSHErr), "", "≥ 1.15 × ssh -C", "**not measured**"})
		}
		rnd := median(r.Random)
		rows = append(rows, row{fmt.Sprintf("compression on: random bytes, virtual cable %d", baud),
			fmt.Sprintf("%.0f B/s", rnd), fmt.Sprintf("raw bytes through the same cable: %.0f B/s (--compress off: %.0f B/s, %.3f)", r.Raw, median(r.RandomOff), median(r.RandomOff)/r.Raw),
			fmt.Sprintf("%.3f", rnd/r.Raw), "≥ 0.97", verdict(rnd/r.Raw >= 0.97)})
		if e := r.Echo; e != nil && len(e.Loaded) > 0 {
			p99 := percentile(e.Loaded, 0.99)
			rows = append(rows, row{fmt.Sprintf("1-byte echo p99 while a text download fills the %d line", baud),
				ms(p99), fmt.Sprintf("idle p99 %s; bulk meanwhile %.0f B/s", ms(percentile(e.Idle, 0.99)), e.BulkRate),
				"", "≤ 60 ms", verdict(p99 <= 60*time.Millisecond)})
		}
	}
	const tcpName = "compression: TCP loopback, whole program, default flags"
	if !failed(tcpName, "compress tcp", "≥ 0.98") && s.compressTCP != nil {
		d, o := median(s.compressTCP.Default), median(s.compressTCP.Off)
		rows = append(rows, row{tcpName, fmt.Sprintf("%.0f MB/s", d/1e6),
			fmt.Sprintf("--compress off: %.0f MB/s", o/1e6), fmt.Sprintf("%.2f", d/o), "≥ 0.98", verdict(d/o >= 0.98)})
	}
	return rows
}

// compressBauds are the baud rates of the compression rows.
var compressBauds = []int{115200, 9600}

// runCompressSections runs the compression sections of the suite.
func (s *suite) runCompressSections() {
	for _, baud := range compressBauds {
		s.section(fmt.Sprintf("compress %d", baud), func() error {
			size := 384 << 10
			if baud < 115200 || s.quick {
				size = 96 << 10
			}
			r, err := s.runCompress(baud, size, baud == 115200)
			s.compress[baud] = r
			return err
		})
	}
	s.section("compress tcp", func() error {
		n := int64(512 << 20)
		if s.quick {
			n = 128 << 20
		}
		r, err := s.runTCPCompress(s.reps(3), n)
		s.compressTCP = r
		return err
	})
}
