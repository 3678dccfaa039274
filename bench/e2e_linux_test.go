//go:build linux

package bench

// The end-to-end half of the suite: the real binary, real processes, real
// pseudo-terminals, FIFOs and sockets, with the clients and servers the
// measurements need.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/serialport"

	"golang.org/x/sys/unix"
)

// proc is a running process with its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

func (s *suite) start(name string, args ...string) (*proc, error) {
	return s.startCmd(name, s.bin, args...)
}

func (s *suite) startCmd(name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(s.dir, fmt.Sprintf("%02d-%s.log", s.nproc, name))
	s.nproc++
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	s.procs = append(s.procs, p)
	return p, nil
}

// stop interrupts p and waits for it, killing it if it lingers.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(8 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail is the end of p's log, for error reports.
func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cpuTime is the CPU time p has used so far, user and system, all threads
// (from /proc, in clock ticks of 10 ms).
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// ctxSwitches is how many times p's threads were switched out so far
// (voluntarily, to wait, or not): a count of its wake-ups.
func (p *proc) ctxSwitches() int64 {
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", p.cmd.Process.Pid))
	var n int64
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// servers are the far-side applications: a bulk source and an echo.
type servers struct {
	bulk, echo net.Listener
	pattern    []byte
	seed       atomic.Uint64 // the last download's seed
	fixed      bool          // every download carries pattern (a text corpus)
	echoMu     sync.Mutex
	echoAt     time.Time // when the echo server last read bytes
}

// The bulk source answers a connection that sends a request (a length and
// a seed, 8 bytes each, big endian) with that many bytes, then closes:
// with a seed (not 0) and a length of up to freshLimit, fresh
// pseudo-random bytes made from the seed (fastRandom; every serial
// download: a compressing link must find nothing it saw before, so the
// rows measure the line), else the shared 1 MiB pattern over and over
// (TCP, where making fresh bytes would cost more than the link under test).
const (
	patternSize = 1 << 20
	freshLimit  = 8 << 20
)

func startServers() (*servers, error) {
	bulk, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		bulk.Close()
		return nil, err
	}
	sv := &servers{bulk: bulk, echo: echo, pattern: randomBytes(patternSize, 42)}
	go serve(bulk, sv.serveBulk)
	go serve(echo, sv.serveEcho)
	return sv, nil
}

func (sv *servers) close() {
	sv.bulk.Close()
	sv.echo.Close()
}

func serve(ln net.Listener, h func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			h(c)
		}()
	}
}

func (sv *servers) serveBulk(c net.Conn) {
	var hdr [16]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	left, seed := int64(binary.BigEndian.Uint64(hdr[:])), binary.BigEndian.Uint64(hdr[8:])
	go func() { _, _ = io.Copy(io.Discard, c) }() // notice the client leaving
	pattern := sv.patternFor(left, seed)
	off := 0
	for left > 0 {
		k := min(int64(32<<10), left, int64(len(pattern)-off))
		if _, err := c.Write(pattern[off : off+int(k)]); err != nil {
			return
		}
		left -= k
		off = (off + int(k)) % len(pattern)
	}
}

// serveEcho echoes, noting when bytes arrived: the echo test splits each
// round trip into its two legs with it.
func (sv *servers) serveEcho(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			sv.echoMu.Lock()
			sv.echoAt = time.Now()
			sv.echoMu.Unlock()
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// transferResult is one bulk transfer seen by its receiver.
type transferResult struct {
	Bytes      int64
	Start      time.Time // the request was sent (or the writer started)
	First      time.Time // the first bytes arrived
	FirstBytes int64     // how many arrived with them
	Last       time.Time // the last byte arrived
}

// Rate is the goodput from the first byte received to the last, in bytes
// per second: the steady rate, the same way for sockmux and for every
// baseline (the bytes that came with the first read are not counted, as
// they took no measured time).
func (r transferResult) Rate() float64 {
	d := r.Last.Sub(r.First).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(r.Bytes-r.FirstBytes) / d
}

// receiver times a transfer as its chunks arrive and, given the pattern,
// checks them.
type receiver struct {
	res     transferResult
	pattern []byte // nil: count only (a noisy line's raw bytes)
	off     int
}

func (rc *receiver) add(b []byte, now time.Time) error {
	if len(b) == 0 {
		return nil
	}
	if rc.res.First.IsZero() {
		rc.res.First, rc.res.FirstBytes = now, int64(len(b))
	}
	rc.res.Last = now
	for got := b; len(got) > 0 && rc.pattern != nil; {
		k := min(len(got), len(rc.pattern)-rc.off)
		if !bytes.Equal(got[:k], rc.pattern[rc.off:rc.off+k]) {
			return fmt.Errorf("data corrupted near byte %d", rc.res.Bytes)
		}
		got = got[k:]
		rc.off = (rc.off + k) % len(rc.pattern)
	}
	rc.res.Bytes += int64(len(b))
	return nil
}

// receive reads want bytes of the pattern from r, checking them, and
// times them.
func receive(r io.Reader, pattern []byte, want int64, start time.Time) (transferResult, error) {
	rc := &receiver{res: transferResult{Start: start}, pattern: pattern}
	buf := make([]byte, 64<<10)
	for rc.res.Bytes < want {
		n, err := r.Read(buf[:min(int64(len(buf)), want-rc.res.Bytes)])
		if aerr := rc.add(buf[:n], time.Now()); aerr != nil {
			return rc.res, aerr
		}
		if err != nil && rc.res.Bytes < want {
			return rc.res, fmt.Errorf("after %d of %d bytes: %w", rc.res.Bytes, want, err)
		}
	}
	return rc.res, nil
}

// patternFor is what a download of n bytes with seed carries (serveBulk).
func (sv *servers) patternFor(n int64, seed uint64) []byte {
	if seed == 0 || n > freshLimit || sv.fixed {
		return sv.pattern
	}
	return fastRandom(int(n), seed)
}

// request asks the bulk source for n bytes with a fresh seed, and returns
// what they will be.
func (sv *servers) request(n int64) (hdr [16]byte, pattern []byte) {
	seed := sv.seed.Add(1)
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	binary.BigEndian.PutUint64(hdr[8:], seed)
	return hdr, sv.patternFor(n, seed)
}

// download asks the bulk source behind addr (a forward, or the source
// itself) for n bytes and receives them.
func (sv *servers) download(addr string, n int64, timeout time.Duration) (transferResult, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return transferResult{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	hdr, pattern := sv.request(n)
	start := time.Now()
	if _, err := c.Write(hdr[:]); err != nil {
		return transferResult{}, err
	}
	return receive(c, pattern, n, start)
}

// waitReady waits until a download through the forward at addr works:
// the forward listens and the link is up.
func (sv *servers) waitReady(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := sv.download(addr, 64, 10*time.Second)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no transfer through %s after %v: %w", addr, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort() (int, error) { return testutil.FreePort() }

func waitFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear in %v", path, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- the virtual serial cable ----

// serialCase is one serial row.
type serialCase struct {
	Baud     int
	BER      float64
	RawSecs  float64 // length of each raw baseline transfer, in line time
	BulkSecs float64 // length of each sockmux transfer, in line time
	Reps     int     // sockmux transfers
	Echo     bool    // also the interactive echo and the CPU time
	Latency  int     // the cable's --latency at both ends, in ms (USB adapters)
}

// serialResult is what a serial case measured.
type serialResult struct {
	Case     serialCase
	Nominal  float64   // bytes per second the baud rate carries at 8N1
	Raw      []float64 // raw baseline rates (before and after)
	Sockmux  []float64 // sockmux goodputs
	CPU      map[string]time.Duration
	Switches map[string]int64 // context switches while CPU was counted
	// The sending link's counters from its control socket (sockmux
	// status), when the binary has one: over the bulk transfers, and for
	// the whole session.
	BulkLink, SessionLink *linkStatus
	CPUBytes              int64         // bytes moved while CPU was counted
	CPUWall               time.Duration // wall time while CPU was counted
	Echo                  *echoResult
	CableNote             string // the cable's closing summary (what it injected)
	// AppBA counts the bytes the far side's applications sent the client
	// through link B over the whole session, LineBA the bytes link B put
	// on the line (the cable's B→A count): their ratio is the line's
	// efficiency, framing, acknowledgements and retransmissions included.
	AppBA, LineBA int64
}

// rawRate is the line rate the raw baseline found: the better of its runs,
// since the line cannot carry more than it does, and a run the machine
// slowed (the cable is a process too) would flatter sockmux's ratio.
func (r *serialResult) rawRate() float64 { return slices.Max(r.Raw) }

// rawThroughCable pushes n raw bytes (no framing) from one end of the
// cable to the other through the same serial driver sockmux uses, and
// times them at the receiver. Whatever the line still held (the last
// frames of link ends that just stopped) is drained first. With check
// false (a noisy line) the bytes are counted, not compared.
func rawThroughCable(pathA, pathB string, baud int, pattern []byte, n int64, check bool) (transferResult, error) {
	mode := serialport.Mode{Baud: baud}
	da, err := serialport.New(pathA, mode, nil)
	if err != nil {
		return transferResult{}, err
	}
	defer da.Close()
	db, err := serialport.New(pathB, mode, nil)
	if err != nil {
		return transferResult{}, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := da.Open(ctx)
	if err != nil {
		return transferResult{}, err
	}
	defer a.Close()
	b, err := db.Open(ctx)
	if err != nil {
		return transferResult{}, err
	}
	type chunk struct {
		b   []byte
		t   time.Time
		err error
	}
	chunks := make(chan chunk, 1024)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 4096)
			k, err := b.Read(buf)
			chunks <- chunk{buf[:k], time.Now(), err}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		b.Close() // ends the reader
		for range chunks {
		}
	}()
	// Drain: wait for 300 ms of silence, 20 s at most.
	quiet, until := time.NewTimer(300*time.Millisecond), time.Now().Add(20*time.Second)
drain:
	for {
		select {
		case c := <-chunks:
			if c.err != nil {
				return transferResult{}, c.err
			}
			if time.Now().After(until) {
				return transferResult{}, errors.New("the line did not fall silent")
			}
			quiet.Reset(300 * time.Millisecond)
		case <-quiet.C:
			break drain
		}
	}
	rc := &receiver{res: transferResult{Start: time.Now()}}
	if check {
		rc.pattern = pattern
	}
	werr := make(chan error, 1)
	go func() {
		off, left := 0, n
		for left > 0 {
			k := min(int64(4096), left, int64(len(pattern)-off))
			if _, err := a.Write(pattern[off : off+int(k)]); err != nil {
				werr <- err
				return
			}
			left -= k
			off = (off + int(k)) % len(pattern)
		}
		werr <- nil
	}()
	limit := time.After(time.Duration(float64(n)/float64(baud/10)*float64(time.Second))*2 + 10*time.Second)
	for rc.res.Bytes < n {
		select {
		case c := <-chunks:
			if err := rc.add(c.b, c.t); err != nil {
				return rc.res, err
			}
			if c.err != nil && rc.res.Bytes < n {
				return rc.res, c.err
			}
		case <-limit:
			return rc.res, fmt.Errorf("raw transfer: %d of %d bytes arrived in time", rc.res.Bytes, n)
		}
	}
	return rc.res, <-werr
}

// runSerial measures one serial case: a cable, the raw baseline, two link
// ends and the transfers through them, the raw baseline again.
func (s *suite) runSerial(c serialCase) (*serialResult, error) {
	res := &serialResult{Case: c, Nominal: float64(c.Baud) / 10, CPU: map[string]time.Duration{}, Switches: map[string]int64{}}
	pathA, pathB := filepath.Join(s.dir, fmt.Sprintf("tty%dA", c.Baud)), filepath.Join(s.dir, fmt.Sprintf("tty%dB", c.Baud))
	args := []string{"cable", "--baud", strconv.Itoa(c.Baud), "--report-every", "0"}
	if c.BER > 0 {
		args = append(args, "--ber", strconv.FormatFloat(c.BER, 'g', -1, 64), "--seed", "7")
	}
	name := strconv.Itoa(c.Baud)
	if c.Latency > 0 {
		args = append(args, "--latency", strconv.Itoa(c.Latency))
		name += fmt.Sprintf("-lat%d", c.Latency)
		pathA, pathB = filepath.Join(s.dir, "tty"+name+"A"), filepath.Join(s.dir, "tty"+name+"B")
	}
	cable, err := s.start("cable-"+name, append(args, pathA, pathB)...)
	if err != nil {
		return nil, err
	}
	defer func() {
		cable.stop()
		res.CableNote = lastLine(cable.logTail(1000), "unplugged")
		if m := regexp.MustCompile(`B→A (\d+) bytes in`).FindStringSubmatch(res.CableNote); m != nil {
			res.LineBA, _ = strconv.ParseInt(m[1], 10, 64)
		}
	}()
	for _, p := range []string{pathA, pathB} {
		if err := waitFile(p, 10*time.Second); err != nil {
			return nil, err
		}
	}
	rawN := int64(c.RawSecs * res.Nominal)
	raw := func() error {
		r, err := rawThroughCable(pathA, pathB, c.Baud, s.srv.pattern, rawN, c.BER == 0)
		if err != nil {
			return fmt.Errorf("raw baseline: %w", err)
		}
		res.Raw = append(res.Raw, r.Rate())
		s.logf("    raw  %8.0f B/s (%d bytes)", r.Rate(), r.Bytes)
		return nil
	}
	if err := raw(); err != nil {
		return nil, err
	}

	bulkPort, err := freePort()
	if err != nil {
		return nil, err
	}
	echoPort, err := freePort()
	if err != nil {
		return nil, err
	}
	baud := strconv.Itoa(c.Baud)
	linkA, err := s.start("link-"+name+"-A", "link", "--comm", pathA, "--baud", baud,
		"-L", fmt.Sprintf("%d:%s", bulkPort, s.srv.bulk.Addr()),
		"-L", fmt.Sprintf("%d:%s", echoPort, s.srv.echo.Addr()))
	if err != nil {
		return nil, err
	}
	defer linkA.stop()
	argsB := []string{"link", "--comm", pathB, "--baud", baud}
	control := ""
	if s.controlFlag {
		control = filepath.Join(s.dir, "link-"+name+"-B.sock")
		argsB = append(argsB, "--control", control)
	}
	linkB, err := s.start("link-"+name+"-B", argsB...)
	if err != nil {
		return nil, err
	}
	defer linkB.stop()
	bulkAddr := fmt.Sprintf("127.0.0.1:%d", bulkPort)
	if err := s.srv.waitReady(bulkAddr, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%w\nlink A:\n%s\nlink B:\n%s", err, linkA.logTail(10), linkB.logTail(10))
	}
	res.AppBA += 64 // the download that found the link up
	bulkN := int64(c.BulkSecs * res.Nominal)
	procs := map[string]*proc{"link A (receives)": linkA, "link B (sends)": linkB, "cable": cable}
	cpu0, sw0 := map[string]time.Duration{}, map[string]int64{}
	for k, p := range procs {
		cpu0[k], sw0[k] = p.cpuTime(), p.ctxSwitches()
	}
	status0, _ := s.status(control)
	wall0 := time.Now()
	for range c.Reps {
		r, err := s.srv.download(bulkAddr, bulkN, time.Duration(c.BulkSecs*4+30)*time.Second)
		if err != nil {
			return nil, fmt.Errorf("download through the cable: %w\nlink A:\n%s\nlink B:\n%s", err, linkA.logTail(10), linkB.logTail(10))
		}
		res.Sockmux = append(res.Sockmux, r.Rate())
		res.CPUBytes += r.Bytes
		res.AppBA += r.Bytes
		s.logf("    sockmux %8.0f B/s (%d bytes in %v)", r.Rate(), r.Bytes, r.Last.Sub(r.Start).Round(time.Millisecond))
	}
	res.CPUWall = time.Since(wall0)
	if status1, err := s.status(control); err == nil && status0 != nil {
		res.BulkLink = status1.minus(status0)
	}
	for k, p := range procs {
		res.CPU[k] = p.cpuTime() - cpu0[k]
		res.Switches[k] = p.ctxSwitches() - sw0[k]
	}
	if c.Echo {
		e, err := s.echo(bulkAddr, fmt.Sprintf("127.0.0.1:%d", echoPort), res.Nominal)
		if err != nil {
			return nil, fmt.Errorf("echo: %w", err)
		}
		res.Echo = e
		res.AppBA += e.BulkBytes + int64(len(e.Idle)+len(e.Loaded)+len(e.Rapid)+5)
	}
	if status2, err := s.status(control); err == nil {
		res.SessionLink = status2
	}
	linkA.stop()
	linkB.stop()
	if err := raw(); err != nil {
		return nil, err
	}
	return res, nil
}

func lastLine(text, containing string) string {
	lines := strings.Split(text, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], containing) {
			l := lines[i]
			if j := strings.Index(l, "A→B"); j >= 0 {
				l = l[j:]
			}
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// ---- the interactive echo under load ----

// echoSamples is how many round trips each phase of the echo test times;
// rapidSamples those of the back-to-back phase.
const (
	echoSamples  = 200
	rapidSamples = 100
)

// Pauses between echo samples, random so that samples do not lock to the
// frame clock: typing pace (a fast typist's 30 ms, key repeat, to a slow
// one's 130 ms) for the row, and back to back (5-25 ms) for a harder case.
var (
	typingPause = [2]int{30, 130}
	rapidPause  = [2]int{5, 25}
)

type echoResult struct {
	Idle, Loaded []time.Duration // round trips, sorted
	// The legs of each round trip: request (client → link A → cable A→B →
	// link B → echo server) and reply (back), sorted, idle and loaded.
	IdleReq, IdleReply, LoadedReq, LoadedReply []time.Duration
	// Rapid are round trips under load with short pauses between them.
	Rapid     []time.Duration
	BulkRate  float64 // the bulk download's goodput while the echo ran
	BulkBytes int64   // what it had delivered when the echo ended
}

// echo times 1-byte round trips through the echo forward, first on the
// idle link, then while a bulk download from the far side fills the line
// in the direction the echo's replies travel.
func (s *suite) echo(bulkAddr, echoAddr string, nominal float64) (*echoResult, error) {
	res := &echoResult{}
	c, err := net.DialTimeout("tcp", echoAddr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	var req, reply []time.Duration
	sample := func(pause [2]int) (time.Duration, error) {
		b := []byte{byte(rng.UintN(256))}
		want := b[0]
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		t0 := time.Now()
		if _, err := c.Write(b); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return 0, err
		}
		t1 := time.Now()
		if b[0] != want {
			return 0, errors.New("echo returned another byte")
		}
		s.srv.echoMu.Lock()
		at := s.srv.echoAt
		s.srv.echoMu.Unlock()
		if at.After(t0) && at.Before(t1) {
			req, reply = append(req, at.Sub(t0)), append(reply, t1.Sub(at))
		}
		time.Sleep(time.Duration(pause[0]+rng.IntN(pause[1]-pause[0])) * time.Millisecond)
		return t1.Sub(t0), nil
	}
	for range 5 { // warm up
		if _, err := sample(typingPause); err != nil {
			return nil, err
		}
	}
	req, reply = nil, nil
	for range echoSamples {
		d, err := sample(typingPause)
		if err != nil {
			return nil, fmt.Errorf("idle: %w", err)
		}
		res.Idle = append(res.Idle, d)
	}
	res.IdleReq, res.IdleReply = req, reply
	req, reply = nil, nil

	// A download big enough to outlast the loaded phase.
	bulkN := int64(nominal * 120)
	bc, err := net.DialTimeout("tcp", bulkAddr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var bulkBytes int64
	bulkDone := make(chan error, 1)
	go func() {
		hdr, _ := s.srv.request(bulkN)
		if _, err := bc.Write(hdr[:]); err != nil {
			bulkDone <- err
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := bc.Read(buf)
			mu.Lock()
			bulkBytes += int64(n)
			mu.Unlock()
			if err != nil {
				bulkDone <- err
				return
			}
		}
	}()
	defer func() {
		bc.Close()
		<-bulkDone
	}()
	time.Sleep(3 * time.Second) // the line fills, the stream's window opens
	mu.Lock()
	b0, t0 := bulkBytes, time.Now()
	mu.Unlock()
	if b0 == 0 {
		return nil, errors.New("the bulk download had not started after 3s")
	}
	for range echoSamples {
		d, err := sample(typingPause)
		if err != nil {
			return nil, fmt.Errorf("under load: %w", err)
		}
		res.Loaded = append(res.Loaded, d)
	}
	res.LoadedReq, res.LoadedReply = req, reply
	for range rapidSamples {
		d, err := sample(rapidPause)
		if err != nil {
			return nil, fmt.Errorf("under load, back to back: %w", err)
		}
		res.Rapid = append(res.Rapid, d)
	}
	mu.Lock()
	res.BulkRate = float64(bulkBytes-b0) / time.Since(t0).Seconds()
	res.BulkBytes = bulkBytes
	left := bulkBytes < bulkN
	mu.Unlock()
	if !left {
		return nil, errors.New("the bulk download ended before the loaded phase did")
	}
	for _, d := range [][]time.Duration{res.Idle, res.Loaded, res.IdleReq, res.IdleReply, res.LoadedReq, res.LoadedReply, res.Rapid} {
		sortDurations(d)
	}
	return res, nil
}

// ---- FIFO pair ----

type fifoResult struct {
	Cat, Library, Sockmux []float64
	CPU                   cpuUse // while sockmux moved the data
}

// cpuMeter measures the CPU time processes (and this one, which runs the
// clients and servers) use over an interval.
type cpuMeter struct {
	procs map[string]*proc
	t0    time.Time
	c0    map[string]time.Duration
	self0 time.Duration
}

// cpuUse is what a cpuMeter saw: CPU time by process, over Wall, while
// Bytes moved.
type cpuUse struct {
	CPU   map[string]time.Duration
	Wall  time.Duration
	Bytes int64
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func newCPUMeter(procs map[string]*proc) *cpuMeter {
	m := &cpuMeter{procs: procs, t0: time.Now(), c0: map[string]time.Duration{}, self0: selfCPU()}
	for k, p := range procs {
		m.c0[k] = p.cpuTime()
	}
	return m
}

func (m *cpuMeter) stop(bytes int64) cpuUse {
	u := cpuUse{CPU: map[string]time.Duration{}, Wall: time.Since(m.t0), Bytes: bytes}
	for k, p := range m.procs {
		u.CPU[k] = p.cpuTime() - m.c0[k]
	}
	u.CPU["this process (clients, servers)"] = selfCPU() - m.self0
	return u
}

// String says how busy each process was, in cores, and its CPU time per
// MiB moved.
func (u cpuUse) String() string {
	var keys []string
	for k := range u.CPU {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	mib := float64(u.Bytes) / (1 << 20)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f cores (%.2f ms/MiB)", k, u.CPU[k].Seconds()/u.Wall.Seconds(), u.CPU[k].Seconds()*1000/mib))
	}
	return strings.Join(parts, ", ")
}

// runFIFO times `cat` relaying through a FIFO pair (bench → a2b → cat →
// b2a → bench), then two link ends over the same FIFO pair carrying a
// download through a forward.
func (s *suite) runFIFO(reps int, catN, sockN int64) (*fifoResult, error) {
	res := &fifoResult{}
	a2b, b2a := filepath.Join(s.dir, "a2b"), filepath.Join(s.dir, "b2a")
	for _, p := range []string{a2b, b2a} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			return nil, fmt.Errorf("mkfifo %s: %w", p, err)
		}
	}
	for range reps {
		r, err := s.catRelay(a2b, b2a, catN)
		if err != nil {
			return nil, fmt.Errorf("cat: %w", err)
		}
		res.Cat = append(res.Cat, r.Rate())
		s.logf("    cat     %8.1f MB/s", r.Rate()/1e6)
		if r, err = s.fifoLibrary(a2b, b2a, sockN); err != nil {
			return nil, fmt.Errorf("link and mux over the FIFO pair: %w", err)
		}
		res.Library = append(res.Library, r.Rate())
		s.logf("    library %8.1f MB/s", r.Rate()/1e6)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	la, err := s.start("fifo-A", "link", "--commout", a2b, "--commin", b2a, "-L", fmt.Sprintf("%d:%s", port, s.srv.bulk.Addr()))
	if err != nil {
		return nil, err
	}
	defer la.stop()
	lb, err := s.start("fifo-B", "link", "--commin", a2b, "--commout", b2a)
	if err != nil {
		return nil, err
	}
	defer lb.stop()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := s.srv.waitReady(addr, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%w\nlink A:\n%s\nlink B:\n%s", err, la.logTail(10), lb.logTail(10))
	}
	meter := newCPUMeter(map[string]*proc{"link A (receives)": la, "link B (sends)": lb})
	var moved int64
	for range reps {
		r, err := s.srv.download(addr, sockN, 2*time.Minute)
		if err != nil {
			return nil, fmt.Errorf("download over the FIFOs: %w", err)
		}
		moved += r.Bytes
		res.Sockmux = append(res.Sockmux, r.Rate())
		s.logf("    sockmux %8.1f MB/s", r.Rate()/1e6)
	}
	res.CPU = meter.stop(moved)
	return res, nil
}

func (s *suite) catRelay(a2b, b2a string, n int64) (transferResult, error) {
	cat, err := s.startCmd("cat", "/bin/sh", "-c", `exec cat <"$1" >"$2"`, "sh", a2b, b2a)
	if err != nil {
		return transferResult{}, err
	}
	defer cat.stop()
	type opened struct {
		f   *os.File
		err error
	}
	wch := make(chan opened, 1)
	go func() {
		f, err := os.OpenFile(a2b, os.O_WRONLY, 0)
		wch <- opened{f, err}
	}()
	r, err := os.Open(b2a)
	if err != nil {
		return transferResult{}, err
	}
	defer r.Close()
	w := <-wch
	if w.err != nil {
		return transferResult{}, w.err
	}
	// The same pipe buffers the pipe driver asks for (1 MiB), so that cat
	// is not held back by the default 64 KiB where sockmux is not.
	for _, f := range []*os.File{w.f, r} {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 1<<20); err != nil {
			return transferResult{}, fmt.Errorf("F_SETPIPE_SZ: %w", err)
		}
	}
	start := time.Now()
	go func() {
		defer w.f.Close()
		off, left := 0, n
		for left > 0 {
			k := min(int64(64<<10), left, int64(len(s.srv.pattern)-off))
			if _, err := w.f.Write(s.srv.pattern[off : off+int(k)]); err != nil {
				return
			}
			left -= k
			off = (off + int(k)) % len(s.srv.pattern)
		}
	}()
	return receive(bufio.NewReaderSize(r, 64<<10), s.srv.pattern, n, start)
}

// ---- TCP, the whole program ----

type tcpE2EResult struct {
	Direct, Sockmux, Secret []float64
	CPU, SecretCPU          cpuUse
}

// runTCPE2E downloads through two link processes over TCP loopback (and,
// when the binary has --secret-file, through an encrypted pair), and
// straight from the source for the baseline.
func (s *suite) runTCPE2E(reps int, n int64) (*tcpE2EResult, error) {
	res := &tcpE2EResult{}
	for range reps {
		r, err := s.srv.download(s.srv.bulk.Addr().String(), n, time.Minute)
		if err != nil {
			return nil, fmt.Errorf("direct: %w", err)
		}
		res.Direct = append(res.Direct, r.Rate())
	}
	pair := func(name string, use *cpuUse, extra ...string) ([]float64, error) {
		lport, err := freePort()
		if err != nil {
			return nil, err
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		linkAddr := fmt.Sprintf("127.0.0.1:%d", lport)
		lb, err := s.start(name+"-B", append([]string{"link", "--listen", linkAddr}, extra...)...)
		if err != nil {
			return nil, err
		}
		defer lb.stop()
		la, err := s.start(name+"-A", append([]string{"link", "--connect", linkAddr, "-L", fmt.Sprintf("%d:%s", port, s.srv.bulk.Addr())}, extra...)...)
		if err != nil {
			return nil, err
		}
		defer la.stop()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := s.srv.waitReady(addr, 30*time.Second); err != nil {
			return nil, fmt.Errorf("%w\nlink A:\n%s\nlink B:\n%s", err, la.logTail(10), lb.logTail(10))
		}
		var rates []float64
		meter := newCPUMeter(map[string]*proc{"link A (receives)": la, "link B (sends)": lb})
		var moved int64
		for range reps {
			r, err := s.srv.download(addr, n, 2*time.Minute)
			if err != nil {
				return nil, err
			}
			moved += r.Bytes
			rates = append(rates, r.Rate())
			s.logf("    %s %8.1f MB/s", name, r.Rate()/1e6)
		}
		*use = meter.stop(moved)
		return rates, nil
	}
	var err error
	if res.Sockmux, err = pair("tcp", &res.CPU); err != nil {
		return nil, err
	}
	if s.secretFlag {
		key := filepath.Join(s.dir, "link.key")
		if out, err := exec.Command(s.bin, "keygen", key).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("keygen: %v: %s", err, out)
		}
		if res.Secret, err = pair("tcp-secret", &res.SecretCPU, "--secret-file", key); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// hasFlag reports whether "sockmux CMD --help" mentions flag.
func hasFlag(bin, cmd, flag string) bool {
	out, _ := exec.Command(bin, cmd, "--help").CombinedOutput()
	return bytes.Contains(out, []byte(flag))
}

// linkStatus is what "sockmux status --json" reports, the counters the
// suite uses.
type linkStatus struct {
	BytesOut     int64 `json:"bytes_out"`
	PayloadOut   int64 `json:"payload_out"`
	FramesOut    int64 `json:"frames_out"`
	FramesResent int64 `json:"frames_resent"`
	FramesBad    int64 `json:"frames_bad"`
	Preemptions  int64 `json:"preemptions"`
	Resumes      int64 `json:"resumes"`
}

func (a *linkStatus) minus(b *linkStatus) *linkStatus {
	return &linkStatus{a.BytesOut - b.BytesOut, a.PayloadOut - b.PayloadOut, a.FramesOut - b.FramesOut,
		a.FramesResent - b.FramesResent, a.FramesBad - b.FramesBad, a.Preemptions - b.Preemptions, a.Resumes - b.Resumes}
}

// String says where the link's bytes went.
func (a *linkStatus) String() string {
	avg := 0.0
	if a.FramesOut > 0 {
		avg = float64(a.PayloadOut) / float64(a.FramesOut)
	}
	return fmt.Sprintf("%d bytes in %d frames (%.0f payload bytes per frame), %d frames sent again, %d cut short for interactive data, %d bad frames received",
		a.BytesOut, a.FramesOut, avg, a.FramesResent, a.Preemptions, a.FramesBad)
}

// status asks a link for its counters through its control socket.
func (s *suite) status(control string) (*linkStatus, error) {
	if control == "" {
		return nil, errors.New("no control socket")
	}
	out, err := exec.Command(s.bin, "status", "--control", control, "--json").Output()
	if err != nil {
		return nil, err
	}
	var st linkStatus
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
