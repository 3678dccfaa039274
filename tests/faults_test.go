//go:build unix

package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/internal/testutil"

	"github.com/sockmux/sockmux/internal/memline"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

// The fault matrix: two sockmux link processes over a faulty virtual
// serial cable (or a TCP relay that cuts), a workload of TCP clients
// through their forwards, and every byte of every stream checked. A cell
// fails on any corrupted or silently lost byte, and on a stream that hangs;
// a stream reset with a reason the client saw (a TCP reset, a refused
// connection) is counted, not failed.
//
// `go test ./tests/` runs a short form; SOCKMUX_FAULTS=full (make faults)
// runs the whole matrix and prints its table.

// fault is a row of the matrix: a line and what goes wrong on it.
type fault struct {
	name      string
	tcp       bool               // over loopback TCP through a relay, not the cable
	baud      int                // serial line speed
	cable     []string           // fault flags for sockmux cable
	cutEvery  time.Duration      // TCP: cut the connection this often
	tcpRate   int                // TCP: the relay's rate in bytes per second each way
	minRun    time.Duration      // short connections go on at least this long
	stopAt    time.Duration      // SIGSTOP end B this long after the start...
	stopFor   time.Duration      // ...for this long
	killAt    time.Duration      // SIGKILL end B this long after the start, and restart it
	scale     float64            // workload size relative to a clean 115200-baud line
	scales    map[string]float64 // per workload, instead of scale
	budget    time.Duration      // 0: run to completion; else stop the workload after this
	slowOK    bool               // streams unfinished at the budget are reported, not failed
	workloads []string           // only these workloads (nil: all)
}

// onlyA reports whether every client must enter at end A: end B is killed,
// and clients of a killed process learn nothing from sockmux.
func (f fault) onlyA() bool { return f.killAt > 0 }

func faultMatrix() []fault {
	serial := func(name string, scale float64, flags ...string) fault {
		return fault{name: name, baud: 115200, cable: flags, scale: scale}
	}
	slow := func(f fault) fault {
		f.budget, f.slowOK = 60*time.Second, true
		return f
	}
	return []fault{
		serial("clean 115200", 1),
		serial("BER 1e-6", 1, "--ber", "1e-6"),
		serial("BER 1e-5", 1, "--ber", "1e-5"),
		serial("BER 1e-4", 0.7, "--ber", "1e-4"),
		slow(serial("BER 1e-3", 0.25, "--ber", "1e-3")),
		slow(fault{name: "BER 3e-3", baud: 115200, cable: []string{"--ber", "3e-3"}, scale: 0.1, workloads: []string{"bulk"}}),
		slow(fault{name: "BER 1e-2", baud: 115200, cable: []string{"--ber", "1e-2"}, scale: 0.05, workloads: []string{"bulk"}}),
		serial("drop 1e-4", 1, "--drop", "1e-4"),
		serial("insert 1e-4", 1, "--insert", "1e-4"),
		serial("dup 1e-4", 1, "--dup", "1e-4"),
		serial("noise 200ms/2s", 0.6, "--burst-every", "2s", "--burst-for", "200ms"),
		serial("unplug 3s/10s", 1, "--unplug-every", "10s", "--unplug-for", "3s"),
		{name: "TCP cut every 3s", tcp: true, cutEvery: 3 * time.Second, tcpRate: 4 << 20, scale: 300, minRun: 10 * time.Second},
		{name: "SIGSTOP B 20s", baud: 115200, stopAt: 4 * time.Second, stopFor: 20 * time.Second, scale: 1},
		{name: "kill+restart B", baud: 115200, killAt: 5 * time.Second, scale: 1},
		{name: "9600 baud ~60s", baud: 9600, scales: map[string]float64{"bulk": 0.25, "mixed32": 0.08, "short1000": 0.2}, budget: 120 * time.Second},
	}
}

// shortMatrix is what every `go test ./tests/` runs: one cell of each kind
// of trouble, small.
func shortMatrix() []struct {
	f fault
	w string
} {
	return []struct {
		f fault
		w string
	}{
		{fault{name: "BER 1e-5", baud: 115200, cable: []string{"--ber", "1e-5"}, scale: 0.3}, "mixed32"},
		{fault{name: "drop+insert+dup 1e-4", baud: 115200, cable: []string{"--drop", "1e-4", "--insert", "1e-4", "--dup", "1e-4"}, scale: 0.3}, "bulk"},
		{fault{name: "unplug 2s/6s", baud: 115200, cable: []string{"--unplug-every", "6s", "--unplug-for", "2s"}, scale: 0.6}, "bulk"},
		{fault{name: "TCP cut every 1s", tcp: true, cutEvery: time.Second, tcpRate: 4 << 20, scale: 30, minRun: 3 * time.Second}, "short1000"},
		{fault{name: "kill+restart B", baud: 115200, killAt: 3 * time.Second, scale: 0.3}, "short1000"},
	}
}

func TestFaultMatrix(t *testing.T) {
	var rows []cellResult
	defer func() { t.Logf("\n%s", matrixTable(rows)) }()
	if os.Getenv("SOCKMUX_FAULTS") != "full" {
		for _, c := range shortMatrix() {
			t.Run(c.f.name+"/"+c.w, func(t *testing.T) { rows = append(rows, runCell(t, c.f, c.w)) })
		}
		return
	}
	for _, f := range faultMatrix() {
		for _, w := range []string{"bulk", "mixed32", "short1000"} {
			if f.workloads != nil && !slices.Contains(f.workloads, w) {
				continue
			}
			t.Run(f.name+"/"+w, func(t *testing.T) { rows = append(rows, runCell(t, f, w)) })
		}
	}
}

// cellResult is one row of the table.
type cellResult struct {
	fault, workload                 string
	streams, ok, bytes              int64
	corrupted, lost, reset, stalled int64
	resumes, sessions               int
	elapsed                         time.Duration
	note                            string
}

func matrixTable(rows []cellResult) string {
	var b strings.Builder
	b.WriteString("| fault | workload | streams | ok | bytes verified | corrupted | lost | reset | stalled | resumed/new | time | note |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d/%d | %.0fs | %s |\n",
			r.fault, r.workload, r.streams, r.ok, r.bytes, r.corrupted, r.lost, r.reset, r.stalled,
			r.resumes, r.sessions, r.elapsed.Seconds(), r.note)
	}
	return b.String()
}

// tally counts the fate of every stream of a cell.
type tally struct {
	streams, ok, bytes              atomic.Int64
	corrupted, lost, reset, stalled atomic.Int64
	mu                              sync.Mutex
	samples                         map[string][]string // a few errors of each kind
}

// outcome kinds.
const (
	fateOK        = "ok"
	fateCorrupted = "corrupted"
	fateLost      = "lost"
	fateReset     = "reset"
	fateStalled   = "stalled"
)

func (t *tally) record(fate string, n int64, detail error) {
	switch fate {
	case fateOK:
		t.ok.Add(1)
		t.bytes.Add(n)
		return
	case fateCorrupted:
		t.corrupted.Add(1)
	case fateLost:
		t.lost.Add(1)
	case fateReset:
		t.reset.Add(1)
	case fateStalled:
		t.stalled.Add(1)
	}
	t.bytes.Add(n)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.samples == nil {
		t.samples = make(map[string][]string)
	}
	if len(t.samples[fate]) < 5 {
		t.samples[fate] = append(t.samples[fate], detail.Error())
	}
}

// errLost marks a stream that ended cleanly (EOF) before all its bytes
// arrived: silent loss. errCorrupt marks bytes that differ.
var (
	errLost    = errors.New("silently lost")
	errCorrupt = errors.New("corrupted")
)

// streamFate classifies how a client's stream ended.
func streamFate(err error) string {
	switch {
	case err == nil:
		return fateOK
	case errors.Is(err, errCorrupt):
		return fateCorrupted
	case errors.Is(err, errLost), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fateLost
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return fateStalled
	}
	// A reset, a refused connection, a broken pipe: the client was told.
	return fateReset
}

// faultServer is the destination of every stream. A client sends a
// header: mode (0 transfer, 1 echo), download size, upload size, seed.
// Transfer: the server streams the download (a pattern from the seed)
// while it reads the upload to its end, then answers the upload's length
// and sha256; a broken upload gets no answer. Echo: everything comes back
// until the client half-closes.
func faultServer(t *testing.T) string {
	t.Helper()
	ln := testutil.ServeLoopback(t, func(c net.Conn) { serveFault(c.(*net.TCPConn)) })
	return ln.Addr().String()
}

const faultHeader = 1 + 8 + 8 + 8

func serveFault(c *net.TCPConn) {
	defer c.Close()
	var hdr [faultHeader]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	down := int64(binary.BigEndian.Uint64(hdr[1:]))
	seed := binary.BigEndian.Uint64(hdr[17:])
	if hdr[0] == 1 {
		if _, err := io.Copy(c, c); err == nil {
			_ = c.CloseWrite()
		}
		return
	}
	type upResult struct {
		n   int64
		sum []byte
		err error
	}
	up := make(chan upResult, 1)
	go func() {
		h := sha256.New()
		n, err := io.Copy(h, c)
		up <- upResult{n, h.Sum(nil), err}
	}()
	if _, err := io.CopyN(c, newPattern(seed), down); err != nil {
		return
	}
	r := <-up
	if r.err != nil {
		return
	}
	_, _ = c.Write(binary.BigEndian.AppendUint64(nil, uint64(r.n)))
	_, _ = c.Write(r.sum)
	_ = c.CloseWrite()
}

// faultTransfer moves up bytes to the server and down bytes back at once
// through addr, checks every byte, and returns the bytes verified.
func faultTransfer(addr string, up, down int64, seed uint64, deadline time.Time) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	hdr := append([]byte{0}, binary.BigEndian.AppendUint64(nil, uint64(down))...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(up))
	hdr = binary.BigEndian.AppendUint64(hdr, seed)
	if _, err := c.Write(hdr); err != nil {
		return 0, err
	}
	upHash, upErr := sendUpload(c, up, seed+1)
	want := newPattern(seed)
	got, exp := make([]byte, 16<<10), make([]byte, 16<<10)
	var n int64
	for n < down {
		k, err := c.Read(got[:min(int64(len(got)), down-n)])
		if k > 0 {
			_, _ = io.ReadFull(want, exp[:k])
			if !bytes.Equal(got[:k], exp[:k]) {
				i := 0
				for got[i] == exp[i] {
					i++
				}
				return n, fmt.Errorf("download byte %d of %d differs: %w", n+int64(i), down, errCorrupt)
			}
			n += int64(k)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, fmt.Errorf("download ended cleanly after %d of %d bytes: %w", n, down, errLost)
			}
			return n, fmt.Errorf("download after %d of %d bytes: %w", n, down, err)
		}
	}
	var trailer [40]byte
	if _, err := io.ReadFull(c, trailer[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return n, fmt.Errorf("upload receipt: stream ended cleanly without it: %w", errLost)
		}
		return n, fmt.Errorf("upload receipt: %w", err)
	}
	if err := <-upErr; err != nil {
		return n, fmt.Errorf("upload: %w", err)
	}
	switch got := int64(binary.BigEndian.Uint64(trailer[:8])); {
	case got < up:
		return n, fmt.Errorf("server got %d of %d upload bytes and a clean end: %w", got, up, errLost)
	case got > up:
		return n, fmt.Errorf("server got %d upload bytes, %d were sent: %w", got, up, errCorrupt)
	case !bytes.Equal(trailer[8:], upHash.Sum(nil)):
		return n, fmt.Errorf("upload of %d bytes: sha256 differs: %w", up, errCorrupt)
	}
	if k, err := c.Read(got[:1]); k != 0 || !errors.Is(err, io.EOF) {
		if k != 0 {
			return n, fmt.Errorf("bytes after the end: %w", errCorrupt)
		}
		return n, fmt.Errorf("end of stream: %w", err)
	}
	return n + up, nil
}

// faultEcho is an interactive session: rounds small messages, each echoed
// back before the next, with a pause between.
func faultEcho(addr string, rounds int, pause time.Duration, r *rand.Rand, deadline time.Time) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(append([]byte{1}, make([]byte, faultHeader-1)...)); err != nil {
		return 0, err
	}
	var n int64
	msg, back := make([]byte, 200), make([]byte, 200)
	for i := range rounds {
		m := msg[:1+r.IntN(len(msg))]
		for j := range m {
			m[j] = byte(r.Uint32())
		}
		if _, err := c.Write(m); err != nil {
			return n, err
		}
		if _, err := io.ReadFull(c, back[:len(m)]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return n, fmt.Errorf("echo round %d: stream ended cleanly: %w", i, errLost)
			}
			return n, fmt.Errorf("echo round %d: %w", i, err)
		}
		if !bytes.Equal(back[:len(m)], m) {
			return n, fmt.Errorf("echo round %d: %w", i, errCorrupt)
		}
		n += 2 * int64(len(m))
		time.Sleep(pause)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if k, err := c.Read(back[:1]); k != 0 || !errors.Is(err, io.EOF) {
		if k != 0 {
			return n, fmt.Errorf("bytes after the echo: %w", errCorrupt)
		}
		return n, fmt.Errorf("end of echo: %w", err)
	}
	return n, nil
}

// cellEnv is a running cell: its two (or three) link processes and the
// entrances clients connect to.
type cellEnv struct {
	t         *testing.T
	f         fault
	a, b      *proc
	restarted []*proc
	entrA     string // -L at end A
	entrB     string // -L at end B
	bArgs     []string
	deadline  time.Time
	started   time.Time
	up        bool // the link came up (it may not, on a hopeless line)
	rng       *rand.Rand
	rngMu     sync.Mutex
	tally     tally
}

// entrance picks where client i enters: alternately A and B, or A only.
func (e *cellEnv) entrance(i int) string {
	if e.f.onlyA() || i%2 == 0 {
		return e.entrA
	}
	return e.entrB
}

func (e *cellEnv) seed() uint64 {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	return e.rng.Uint64()
}

// startCell starts the transport, both ends and the destination server.
func startCell(t *testing.T, f fault) *cellEnv {
	srv := faultServer(t)
	pa, pb := freePort(t), freePort(t)
	e := &cellEnv{t: t, f: f, entrA: addr(pa), entrB: addr(pb), rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)),
		started: time.Now()}
	fwdA := []string{"-L", fmt.Sprintf("%d:%s", pa, srv)}
	fwdB := []string{"-L", fmt.Sprintf("%d:%s", pb, srv)}
	if f.tcp {
		linkAddr := addr(freePort(t))
		e.bArgs = append([]string{"link", "--listen", linkAddr}, fwdB...)
		e.b = start(t, "end-B", e.bArgs...)
		rl := newRelay(t, linkAddr, f.tcpRate)
		e.a = start(t, "end-A", append([]string{"link", "--connect", rl.addr()}, fwdA...)...)
		if f.cutEvery > 0 {
			stop := make(chan struct{})
			t.Cleanup(func() { close(stop) })
			go func() {
				tick := time.NewTicker(f.cutEvery)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						rl.cut()
					}
				}
			}()
		}
	} else {
		dir := t.TempDir()
		ttyA, ttyB := filepath.Join(dir, "ttyA"), filepath.Join(dir, "ttyB")
		args := append([]string{"cable", "--baud", fmt.Sprint(f.baud), "--seed", fmt.Sprint(e.seed()%1e9 + 1)}, f.cable...)
		start(t, "cable", append(args, ttyA, ttyB)...)
		for _, p := range []string{ttyA, ttyB} {
			require.Eventually(t, func() bool { _, err := os.Stat(p); return err == nil }, 10*time.Second, 10*time.Millisecond)
		}
		baud := []string{"--baud", fmt.Sprint(f.baud)}
		e.a = start(t, "end-A", append(append([]string{"link", "--comm", ttyA}, baud...), fwdA...)...)
		e.bArgs = append(append([]string{"link", "--comm", ttyB}, baud...), fwdB...)
		e.b = start(t, "end-B", e.bArgs...)
	}
	// On a hopeless line (slowOK) the link may never come up: the cell
	// then reports that.
	for !e.up && time.Since(e.started) < 30*time.Second {
		e.up = e.a.countLog("link up") > 0 && e.b.countLog("link up") > 0
		time.Sleep(20 * time.Millisecond)
	}
	if !e.up && !f.slowOK {
		t.Fatalf("%s: the link did not come up in 30 s", f.name)
	}
	waitListening(t, e.entrA, 10*time.Second)
	waitListening(t, e.entrB, 10*time.Second)
	return e
}

// troubleMaker stops or kills end B on the fault's schedule.
func (e *cellEnv) troubleMaker(ctx context.Context) {
	f := e.f
	switch {
	case f.stopFor > 0:
		if !faultSleep(ctx, f.stopAt) {
			return
		}
		e.b.signal(syscall.SIGSTOP)
		faultSleep(context.Background(), f.stopFor)
		e.b.signal(syscall.SIGCONT)
	case f.killAt > 0:
		if !faultSleep(ctx, f.killAt) {
			return
		}
		e.b.signal(syscall.SIGKILL)
		e.b.wait(10 * time.Second)
		time.Sleep(time.Second)
		b2 := start(e.t, "end-B-restarted", e.bArgs...)
		e.restarted = append(e.restarted, b2)
	}
}

func faultSleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// runCell runs workload w under fault f and checks every stream.
func runCell(t *testing.T, f fault, w string) cellResult {
	if s, ok := f.scales[w]; ok {
		f.scale = s
	}
	e := startCell(t, f)
	begin := time.Now()
	limit := 5 * time.Minute
	if f.budget > 0 {
		limit = f.budget
	}
	e.deadline = begin.Add(limit)
	ctx, cancel := context.WithDeadline(context.Background(), e.deadline)
	defer cancel()
	trouble := make(chan struct{})
	go func() { defer close(trouble); e.troubleMaker(ctx) }()

	switch w {
	case "bulk":
		e.bulk(ctx)
	case "mixed32":
		e.mixed(ctx)
	case "short1000":
		e.short(ctx)
	default:
		t.Fatalf("unknown workload %q", w)
	}
	elapsed := time.Since(begin)
	cancel()
	<-trouble

	procs := append([]*proc{e.a, e.b}, e.restarted...)
	res := cellResult{fault: f.name, workload: w, elapsed: elapsed,
		streams: e.tally.streams.Load(), ok: e.tally.ok.Load(), bytes: e.tally.bytes.Load(),
		corrupted: e.tally.corrupted.Load(), lost: e.tally.lost.Load(), reset: e.tally.reset.Load(), stalled: e.tally.stalled.Load()}
	abandoned := 0
	for _, p := range procs {
		res.resumes += p.countLog("link resumed")
		res.sessions += p.countLog("peer started a new session")
		abandoned += p.countLog("abandoning session")
	}
	if f.budget > 0 {
		res.note = fmt.Sprintf("%.0f B/s", float64(res.bytes)/elapsed.Seconds())
	}
	if !e.up {
		res.note = "link not up within 30 s"
	}
	t.Logf("%s / %s: %d streams, %d ok, %d bytes verified, %d corrupted, %d lost, %d reset, %d stalled, %d resumed, %d new sessions, %v",
		f.name, w, res.streams, res.ok, res.bytes, res.corrupted, res.lost, res.reset, res.stalled, res.resumes, res.sessions, elapsed.Round(time.Second))
	e.tally.mu.Lock()
	for k, v := range e.tally.samples {
		t.Logf("  %s: %s", k, strings.Join(v, " | "))
	}
	e.tally.mu.Unlock()
	if abandoned > 0 {
		t.Errorf("%s / %s: an end found the other breaking the protocol %d times (\"abandoning session\")", f.name, w, abandoned)
	}
	if res.corrupted > 0 || res.lost > 0 {
		t.Errorf("%s / %s: %d streams corrupted, %d silently lost", f.name, w, res.corrupted, res.lost)
	}
	if res.stalled > 0 && !f.slowOK {
		t.Errorf("%s / %s: %d streams hung", f.name, w, res.stalled)
	}
	if res.ok == 0 && !f.slowOK {
		t.Errorf("%s / %s: no stream got through", f.name, w)
	}
	if f.killAt > 0 && res.sessions == 0 {
		t.Errorf("%s / %s: end A never saw the new session", f.name, w)
	}
	return res
}

// stream runs one client stream and records its fate.
func (e *cellEnv) stream(run func() (int64, error)) string {
	e.tally.streams.Add(1)
	n, err := run()
	f := streamFate(err)
	e.tally.record(f, n, err)
	return f
}

// retried runs a stream again, as a client would, for as long as it is
// reset (the peer restarted under it).
func (e *cellEnv) retried(ctx context.Context, run func() (int64, error)) {
	for e.stream(run) == fateReset && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
	}
}

func faultScaled(base float64, s float64) int64 { return int64(base * s) }

// bulk: one stream, opened at end A, moving 192 KiB (scaled) each way;
// again if it is reset.
func (e *cellEnv) bulk(ctx context.Context) {
	size := faultScaled(192<<10, e.f.scale)
	e.retried(ctx, func() (int64, error) { return faultTransfer(e.entrA, size, size, e.seed(), e.deadline) })
}

// mixed: 32 clients at once, from both ends: 4 bulk streams, 12
// interactive sessions (each again if reset), and 16 clients making short
// connections one after another until the others are done.
func (e *cellEnv) mixed(ctx context.Context) {
	var long, shorts sync.WaitGroup
	done := make(chan struct{})
	size := faultScaled(24<<10, e.f.scale)
	for i := range 4 {
		long.Add(1)
		go func() {
			defer long.Done()
			e.retried(ctx, func() (int64, error) { return faultTransfer(e.entrance(i), size, size, e.seed(), e.deadline) })
		}()
	}
	for i := range 12 {
		long.Add(1)
		go func() {
			defer long.Done()
			r := rand.New(rand.NewPCG(e.seed(), 2))
			rounds := max(3, int(20*min(e.f.scale, 1)))
			e.retried(ctx, func() (int64, error) { return faultEcho(e.entrance(i+1), rounds, 100*time.Millisecond, r, e.deadline) })
		}()
	}
	for i := range 16 {
		shorts.Add(1)
		go func() {
			defer shorts.Done()
			r := rand.New(rand.NewPCG(e.seed(), 3))
			for k := 0; ; k++ {
				select {
				case <-done:
					if k >= 3 {
						return
					}
				case <-ctx.Done():
					return
				default:
				}
				n := int64(float64(256+r.IntN(1792)) * min(1, e.f.scale))
				e.stream(func() (int64, error) { return faultTransfer(e.entrance(i+k), n, n, e.seed(), e.deadline) })
			}
		}()
	}
	long.Wait()
	close(done)
	shorts.Wait()
}

// short: 1,000 connections (scaled down on slow lines; more while the
// fault's minRun lasts), 32 at a time, each moving 64 bytes each way,
// opened and closed as fast as they go.
func (e *cellEnv) short(ctx context.Context) {
	total := int(1000 * min(1, e.f.scale))
	if e.f.scale < 1 {
		total = max(100, total)
	}
	until := time.Now().Add(e.f.minRun)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total && time.Now().After(until) || ctx.Err() != nil {
					return
				}
				e.stream(func() (int64, error) { return faultTransfer(e.entrance(i), 64, 64, e.seed(), e.deadline) })
			}
		}()
	}
	wg.Wait()
}

// logTail returns the last n lines of log.
func logTail(log string, n int) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// memlineDriver is a link.Driver over an in-memory line.
type memlineDriver struct {
	*memline.End
	props link.Properties
}

func (d memlineDriver) Properties() link.Properties { return d.props }

// TestFaultsVirtualTime runs the real link and mux of both ends over an
// in-memory 115200-baud line with bit errors, in virtual time, for many
// seeds: three bulk streams and three interactive ones, each echoed and
// checked byte for byte. With the FEC stage (on by default on lines) every
// stream must arrive whole and the session hold at each BER, within one,
// two and three virtual minutes at 1e-3, 3e-3 and 1e-2 (measured: 10 s,
// 9 to 22 s, 10 to 34 s; without the code 1e-2 made no progress at all).
// A stall dumps both ends' link and mux state.
func TestFaultsVirtualTime(t *testing.T) {
	for _, ber := range []float64{1e-3, 3e-3, 1e-2} {
		for seed := uint64(1); seed <= 6; seed++ {
			t.Run(fmt.Sprintf("BER_%g/seed_%d", ber, seed), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { noisyLineRun(t, ber, seed) })
			})
		}
	}
}

func noisyLineRun(t *testing.T, ber float64, seed uint64) {
	cable := memline.New(seed)
	cable.Rate, cable.BER, cable.HideQueue = 11520, ber, true
	props := link.Properties{LineRate: 11520}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var logs [2]testutil.LogBuffer
	var ms [2]*mux.Mux
	var es [2]*endpoint.Endpoint
	for i := range 2 {
		log := slog.New(slog.NewTextHandler(&logs[i], nil))
		// The stream window is the endpoint's for the line
		// (endpoint.StreamWindow), as for sockmux link.
		e, err := endpoint.New(endpoint.Options{Driver: memlineDriver{cable.End(i), props},
			AcceptStreams: true, Logger: log})
		require.NoError(t, err)
		ms[i], es[i] = e.Mux, e
		wg.Add(1)
		go func() { defer wg.Done(); _ = e.Run(ctx) }()
	}
	go func() { // end 1 echoes every stream
		for {
			s, err := ms[1].AcceptStream(ctx)
			if err != nil {
				return
			}
			s.Accept()
			go func() { _, _ = io.Copy(s, s); _ = s.CloseWrite() }()
		}
	}()
	var tl tally
	var sw sync.WaitGroup
	stream := func(id int, size, chunk int, pause time.Duration) {
		defer sw.Done()
		tl.streams.Add(1)
		s, err := ms[0].Open(ctx, mux.Info{Dest: "echo"})
		if err != nil {
			tl.record(fateReset, 0, err)
			return
		}
		data := make([]byte, size)
		_, _ = newPattern(seed<<8 | uint64(id)).Read(data)
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			for off := 0; off < len(data); off += chunk {
				if _, err := s.Write(data[off:min(off+chunk, len(data))]); err != nil {
					return
				}
				time.Sleep(pause)
			}
			_ = s.CloseWrite()
		}()
		got, err := io.ReadAll(s)
		_ = s.Close()
		<-wrote
		switch {
		case !bytes.Equal(got, data[:min(len(got), len(data))]) || len(got) > len(data):
			tl.record(fateCorrupted, int64(len(got)), fmt.Errorf("stream %d: %w", id, errCorrupt))
		case err == nil && len(got) < len(data):
			tl.record(fateLost, int64(len(got)), fmt.Errorf("stream %d: %d of %d bytes, then a clean end: %w", id, len(got), len(data), errLost))
		case err != nil:
			tl.record(fateReset, int64(len(got)), err)
		default:
			tl.record(fateOK, int64(len(got)), nil)
		}
	}
	for i := range 3 {
		sw.Add(2)
		go stream(i, 16<<10, 4096, 0)
		go stream(10+i, 300, 10, 300*time.Millisecond)
	}
	begin := time.Now()
	done := make(chan struct{})
	go func() { sw.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Minute):
		for i, e := range es { // what the ends were waiting for
			t.Logf("end %d after 20 virtual minutes:\n%s%s  log tail:\n%s", i, e.Link.DebugState(), e.Mux.DebugState(), logTail(logs[i].String(), 30))
		}
		ms[0].Close() // what is still under way ends with a reset
		<-done
	}
	elapsed := time.Since(begin)
	cancel()
	ms[0].Close()
	ms[1].Close()
	wg.Wait()
	sessions := strings.Count(logs[0].String()+logs[1].String(), "peer started a new session")
	t.Logf("BER %g seed %d: %d streams, %d whole, %d reset, %d bytes, %v virtual, %d spurious new sessions",
		ber, seed, tl.streams.Load(), tl.ok.Load(), tl.reset.Load(), tl.bytes.Load(), elapsed.Round(time.Second), sessions)
	if tl.corrupted.Load()+tl.lost.Load() > 0 {
		t.Errorf("BER %g seed %d: %d corrupted, %d silently lost: %v", ber, seed, tl.corrupted.Load(), tl.lost.Load(), tl.samples)
	}
	limit := map[float64]time.Duration{1e-3: time.Minute, 3e-3: 2 * time.Minute, 1e-2: 3 * time.Minute}[ber]
	if tl.ok.Load() != tl.streams.Load() || sessions > 0 || elapsed > limit {
		t.Errorf("BER %g seed %d: %d of %d streams whole, %d new sessions, %v: %v", ber, seed, tl.ok.Load(), tl.streams.Load(), sessions, elapsed, tl.samples)
	}
}
