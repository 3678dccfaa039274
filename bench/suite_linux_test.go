//go:build linux

package bench

// TestSuite is "make bench": every row of issue 6's table, each against a
// baseline measured in the same run, printed as one table and written to
// docs/benchmarks.md.

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// suite holds one run of the suite.
type suite struct {
	t     *testing.T
	quick bool // SOCKMUX_BENCH_QUICK: short runs, to try the suite out
	bin   string
	dir   string
	srv   *servers
	procs []*proc
	nproc int

	only        *regexp.Regexp // SOCKMUX_BENCH_ONLY: run only the sections it matches
	code        string         // the code in the work tree as the run started
	binVersion  string         // what the binary says it is
	loads       []string       // the load average as each section started
	secretFlag  bool           // the binary has "link --secret-file"
	controlFlag bool           // the binary has "link --control" (and "sockmux status")
	started     time.Time
	load0       string

	tcp       map[string][]testing.BenchmarkResult // by benchmark name, one per repetition
	tcpOrder  []string
	profiles  []profile
	idle      []idleResult
	fifo      *fifoResult
	tcpE2E    *tcpE2EResult
	compare   *compareResult // whole program against yamux and ssh (compare_linux_test.go)
	serial    map[string]*serialResult
	serialLib []*serialLibResult
	// compression rows (compress_linux_test.go)
	compress    map[int]*compressResult
	compressTCP *tcpCompressResult
	light       []*lightResult    // small-device rows (light_linux_test.go)
	halfDuplex  *halfDuplexResult // half-duplex rows (halfduplex_linux_test.go)
	fec         []*fecResult      // noisy-line rows (fec_linux_test.go)
	hub         *hubResult        // hub rows (hub_linux_test.go)
	autoBaud    *autoBaudResult   // the --baud auto row (autobaud_linux_test.go)
	errs        map[string]error
}

func TestSuite(t *testing.T) {
	if os.Getenv("SOCKMUX_BENCH") == "" {
		t.Skip("the benchmark suite runs with SOCKMUX_BENCH=1 (make bench)")
	}
	s := &suite{
		t:        t,
		quick:    os.Getenv("SOCKMUX_BENCH_QUICK") != "",
		tcp:      map[string][]testing.BenchmarkResult{},
		serial:   map[string]*serialResult{},
		compress: map[int]*compressResult{},
		errs:     map[string]error{},
		started:  time.Now(),
		load0:    loadAvg(),
	}
	if only := os.Getenv("SOCKMUX_BENCH_ONLY"); only != "" {
		s.only = regexp.MustCompile(only)
	}
	s.setup()
	defer s.cleanup()

	s.section("tcp", s.runTCPLibrary)
	s.section("idle", s.runIdle)
	s.section("fifo", func() error {
		catN, sockN := int64(1<<30), int64(512<<20)
		if s.quick {
			catN, sockN = 256<<20, 128<<20
		}
		r, err := s.runFIFO(s.reps(3), catN, sockN)
		s.fifo = r
		return err
	})
	s.section("tcp-e2e", func() error {
		n := int64(512 << 20)
		if s.quick {
			n = 128 << 20
		}
		r, err := s.runTCPE2E(s.reps(3), n)
		s.tcpE2E = r
		return err
	})
	s.section("tcp-compare", func() error {
		n := int64(512 << 20)
		if s.quick {
			n = 128 << 20
		}
		r, err := s.runCompare(s.reps(3), n)
		s.compare = r
		return err
	})
	for _, c := range s.serialCases() {
		key := serialKey(c)
		s.section("serial "+key, func() error {
			r, err := s.runSerial(c)
			s.serial[key] = r
			return err
		})
	}
	s.section("serial library 115200", func() error {
		secs := 15.0
		if s.quick {
			secs = 5
		}
		r, err := s.serialLibrary(115200, secs)
		if r != nil {
			s.serialLib = append(s.serialLib, r)
			s.logf("    %v", r)
		}
		return err
	})
	s.runCompressSections()
	s.runLightSections()
	s.runHalfDuplexSection()
	s.runFECSection()
	s.runHubSection()
	s.runAutoBaudSection()
	s.report()
	for name, err := range s.errs {
		t.Errorf("%s: %v", name, err)
	}
}

func (s *suite) reps(n int) int {
	if s.quick {
		return min(n, 2)
	}
	return n
}

// serialCases are the serial rows; the 115200 clean case also carries the
// echo test and the CPU time.
func (s *suite) serialCases() []serialCase {
	k := 1.0
	if s.quick {
		k = 0.3
	}
	return []serialCase{
		{Baud: 115200, RawSecs: 6 * k, BulkSecs: 15 * k, Reps: 2, Echo: true},
		{Baud: 115200, BER: 1e-5, RawSecs: 6 * k, BulkSecs: 20 * k, Reps: 2},
		{Baud: 9600, RawSecs: 8 * k, BulkSecs: 20 * k, Reps: 2},
		{Baud: 921600, RawSecs: 4 * k, BulkSecs: 10 * k, Reps: 2},
		// USB serial adapters' 16 ms latency timer (FTDI's default) at
		// both ends: the echo must still meet its target.
		{Baud: 115200, Latency: 16, RawSecs: 4 * k, BulkSecs: 10 * k, Reps: 1, Echo: true},
	}
}

func serialKey(c serialCase) string {
	if c.Latency > 0 {
		return fmt.Sprintf("%d latency %dms", c.Baud, c.Latency)
	}
	if c.BER > 0 {
		return fmt.Sprintf("%d ber %g", c.Baud, c.BER)
	}
	return strconv.Itoa(c.Baud)
}

func (s *suite) logf(format string, a ...any) {
	fmt.Printf(format+"\n", a...)
}

// section runs one part of the suite; a failure is recorded and the suite
// goes on with the next.
func (s *suite) section(name string, f func() error) {
	if s.only != nil && !s.only.MatchString(name) {
		return
	}
	load := loadAvg()
	s.loads = append(s.loads, name+": "+load)
	s.logf("== %s (load average %s)", name, load)
	t0 := time.Now()
	if err := f(); err != nil {
		s.errs[name] = err
		s.logf("   FAILED: %v", err)
	}
	s.logf("   (%v)", time.Since(t0).Round(100*time.Millisecond))
}

func (s *suite) setup() {
	t := s.t
	dir, err := os.MkdirTemp("", "sockmux-bench-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir = dir
	s.bin = os.Getenv("SOCKMUX_BIN")
	if s.bin == "" {
		s.bin = filepath.Join(dir, "sockmux")
		build := exec.Command("go", "build", "-o", s.bin, "../cmd/sockmux")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			t.Fatalf("building sockmux: %v", err)
		}
	} else if s.bin, err = filepath.Abs(s.bin); err != nil {
		t.Fatal(err)
	}
	s.secretFlag = hasFlag(s.bin, "link", "--secret-file")
	s.controlFlag = hasFlag(s.bin, "link", "--control")
	s.code = codeVersion()
	if out, err := exec.Command(s.bin, "--version").Output(); err == nil {
		s.binVersion = strings.TrimSpace(string(out))
	}
	if s.srv, err = startServers(); err != nil {
		t.Fatal(err)
	}
}

func (s *suite) cleanup() {
	for _, p := range s.procs {
		p.stop()
	}
	s.srv.close()
	if s.t.Failed() {
		s.logf("logs of the processes are kept in %s", s.dir)
		return
	}
	os.RemoveAll(s.dir)
}

// ---- TCP, library level ----

var tcpBenchmarks = []struct {
	name    string
	kind    systemKind
	streams int
}{
	{"streams=1/raw", rawKind, 1},
	{"streams=1/yamux", yamuxKind, 1},
	{"streams=1/sockmux", sockmuxKind, 1},
	{"streams=1/sockmux+secret", secretKind, 1},
	{"streams=64/raw", rawKind, 64},
	{"streams=64/yamux", yamuxKind, 64},
	{"streams=64/sockmux", sockmuxKind, 64},
}

// runTCPLibrary runs the TCP benchmarks, all of them once per repetition
// so that each ratio compares runs taken moments apart, then once more each
// for sockmux under the CPU profiler.
func (s *suite) runTCPLibrary() error {
	reps := s.reps(5)
	for rep := range reps {
		for _, b := range tcpBenchmarks {
			var fail error
			r := testing.Benchmark(func(tb *testing.B) {
				runStreams(tb, b.kind, b.streams)
				if tb.Failed() {
					fail = errors.New("failed")
				}
			})
			if r.N == 0 || fail != nil {
				return fmt.Errorf("BenchmarkTCP/%s did not run", b.name)
			}
			if rep == 0 {
				s.tcpOrder = append(s.tcpOrder, b.name)
			}
			s.tcp[b.name] = append(s.tcp[b.name], r)
			s.logf("BenchmarkTCP/%s-%d\t%s\t%s", b.name, runtime.GOMAXPROCS(0), r.String(), r.MemString())
		}
	}
	for _, p := range []struct {
		name  string
		kind  systemKind
		n     int
		trace bool
	}{
		{"sockmux, 1 stream", sockmuxKind, 1, true},
		{"sockmux, 64 streams", sockmuxKind, 64, true},
		{"sockmux+secret, 1 stream", secretKind, 1, true},
		{"yamux, 1 stream", yamuxKind, 1, false},
		{"raw TCP, 1 stream", rawKind, 1, false},
	} {
		prof, err := s.profile(p.name, p.kind, p.n)
		if err != nil {
			return fmt.Errorf("profiling %s: %w", p.name, err)
		}
		prof.listed = p.trace
		s.profiles = append(s.profiles, prof)
	}
	return nil
}

// mbps is a benchmark's throughput in MB/s (10^6 bytes).
func mbps(r testing.BenchmarkResult) float64 {
	if r.T <= 0 {
		return 0
	}
	return float64(r.Bytes) * float64(r.N) / r.T.Seconds() / 1e6
}

// tcpRatio is the median over repetitions of a/b and the medians of each.
func (s *suite) tcpRatio(a, b string) (ratio, ma, mb float64) {
	ra, rb := s.tcp[a], s.tcp[b]
	var rs, as, bs []float64
	for i := range min(len(ra), len(rb)) {
		x, y := mbps(ra[i]), mbps(rb[i])
		as, bs = append(as, x), append(bs, y)
		if y > 0 {
			rs = append(rs, x/y)
		}
	}
	return median(rs), median(as), median(bs)
}

// ---- profiles ----

type profile struct {
	name       string
	mbps       float64
	bytes      float64       // moved while profiling
	total      time.Duration // CPU samples
	wall       time.Duration
	top        []topLine
	categories []category
	listed     bool // show its top functions, not only the categories
	allocTop   []string
	allocTotal float64 // bytes allocated while profiling
}

type topLine struct {
	flat, cum float64 // percent of the samples
	name      string
}

type category struct {
	name string
	pct  float64
}

// profileTime is how long each profile samples: enough samples to rank
// the functions.
func (s *suite) profileTime() time.Duration {
	if s.quick {
		return time.Second
	}
	return 4 * time.Second
}

// profile runs the benchmark under the CPU profiler (repeatedly, for
// profileTime) and takes the allocations it made from the heap profile.
func (s *suite) profile(name string, kind systemKind, n int) (profile, error) {
	p := profile{name: name}
	base := filepath.Join(s.dir, strings.NewReplacer(" ", "", ",", "-", "+", "-").Replace(name))
	f, err := os.Create(base + ".cpu.pprof")
	if err != nil {
		return p, err
	}
	if err := writeHeapProfile(base + ".allocs0.pprof"); err != nil {
		return p, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return p, err
	}
	t0 := time.Now()
	var bytes, secs float64
	for time.Since(t0) < s.profileTime() {
		r := testing.Benchmark(func(b *testing.B) { runStreams(b, kind, n) })
		bytes += float64(r.Bytes) * float64(r.N)
		secs += r.T.Seconds()
	}
	p.wall = time.Since(t0)
	pprof.StopCPUProfile()
	f.Close()
	if err := writeHeapProfile(base + ".allocs1.pprof"); err != nil {
		return p, err
	}
	p.mbps = bytes / secs / 1e6
	p.bytes = bytes
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=100000", base+".cpu.pprof").CombinedOutput()
	if err != nil {
		return p, fmt.Errorf("go tool pprof: %v: %s", err, out)
	}
	p.top, p.total = parseTop(string(out))
	sums := map[string]float64{}
	for _, l := range p.top {
		sums[categoryOf(l.name)] += l.flat
	}
	for k, v := range sums {
		p.categories = append(p.categories, category{k, v})
	}
	slices.SortFunc(p.categories, func(a, b category) int {
		if a.pct != b.pct {
			if a.pct > b.pct {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	out, err = exec.Command("go", "tool", "pprof", "-sample_index=alloc_space", "-top", "-nodecount=12",
		"-base", base+".allocs0.pprof", base+".allocs1.pprof").CombinedOutput()
	if err != nil {
		return p, fmt.Errorf("go tool pprof (allocations): %v: %s", err, out)
	}
	p.allocTop, p.allocTotal = parseTopRaw(string(out))
	return p, nil
}

func writeHeapProfile(path string) error {
	runtime.GC() // the heap profile is as of the last collection
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

// parseTopRaw keeps the lines of a "pprof -top" listing and reads the
// total ("... of 1.5GB total").
func parseTopRaw(out string) ([]string, float64) {
	var lines []string
	var total float64
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "% of "); i >= 0 && strings.HasSuffix(line, " total") {
			v := strings.TrimSuffix(line[i+len("% of "):], " total")
			total = parseBytes(v)
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 6 && strings.HasSuffix(f[1], "%") && strings.HasSuffix(f[4], "%") {
			lines = append(lines, line)
		}
	}
	return lines, total
}

func parseBytes(v string) float64 {
	units := []struct {
		suffix string
		k      float64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			x, _ := strconv.ParseFloat(strings.TrimSuffix(v, u.suffix), 64)
			return x * u.k
		}
	}
	return 0
}

// parseTop reads "go tool pprof -top" output.
func parseTop(out string) ([]topLine, time.Duration) {
	var lines []topLine
	var total time.Duration
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "Total samples = "); i >= 0 {
			f := strings.Fields(line[i+len("Total samples = "):])
			if len(f) > 0 {
				total, _ = time.ParseDuration(f[0])
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") || !strings.HasSuffix(f[4], "%") {
			continue
		}
		if _, err := time.ParseDuration(f[0]); err != nil {
			continue
		}
		flat, err1 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		cum, err2 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		lines = append(lines, topLine{flat: flat, cum: cum, name: strings.Join(f[5:], " ")})
	}
	return lines, total
}

// categoryOf puts a function where its CPU time is spent, by package.
func categoryOf(fn string) string {
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(fn, p) {
				return true
			}
		}
		return false
	}
	switch {
	case has("github.com/sockmux/sockmux/link.cobs"):
		return "link: COBS encode/decode"
	case has("github.com/sockmux/sockmux/link."):
		return "link: framing, ARQ, reader and writer loops"
	case has("github.com/sockmux/sockmux/mux."):
		return "mux: streams, scheduling, buffers"
	case has("hash/crc32."):
		return "CRC-32C"
	case has("crypto/", "golang.org/x/crypto/", "github.com/flynn/noise", "vendor/golang.org/x/crypto/"):
		return "encryption"
	case has("github.com/hashicorp/yamux."):
		return "yamux"
	case has("syscall.", "internal/runtime/syscall", "internal/poll.", "os.", "net.", "runtime.netpoll", "runtime.entersyscall", "runtime.exitsyscall", "runtime/internal/syscall."):
		return "system calls and netpoll (read, write)"
	case has("runtime.memmove", "runtime.memclr", "indexbytebody", "bytes.", "internal/bytealg."):
		return "copying and scanning bytes (memmove, IndexByte)"
	case has("runtime.mallocgc", "runtime.gc", "runtime.scanobject", "runtime.greyobject", "runtime.findObject",
		"runtime.markBits", "runtime.heapBits", "runtime.sweep", "runtime.(*mspan)", "runtime.(*mheap)",
		"runtime.(*mcache)", "runtime.(*mcentral)", "runtime.(*gcWork)", "runtime.wbBuf", "runtime.bulkBarrier",
		"runtime.scanblock", "runtime.markroot", "runtime.newobject", "runtime.makeslice", "runtime.growslice",
		"runtime.typePointers", "runtime.spanOf", "runtime.(*gcBits)", "runtime.(*sweepLocked)", "runtime.nextFreeFast",
		"runtime.memclrNoHeapPointers", "runtime.madvise", "runtime.sysUnused", "runtime.(*pageAlloc)", "runtime.(*mspan)"):
		return "allocation and garbage collection"
	case has("runtime.futex", "runtime.usleep", "runtime.osyield", "runtime.nanotime", "runtime.walltime"):
		return "runtime: sleeping and waking threads (futex)"
	case has("runtime."):
		return "runtime: scheduler, channels, locks, timers"
	case has("github.com/sockmux/sockmux/bench."):
		return "the benchmark's own reader and writer"
	case has("sync."):
		return "sync: mutexes, wait groups"
	}
	return "other"
}

// ---- idle streams ----

func (s *suite) runIdle() error {
	for range s.reps(2) {
		r, err := measureIdle(idleStreams)
		if err != nil {
			return err
		}
		s.idle = append(s.idle, r)
		s.logf("    %d streams: %.0f B/stream (both ends), %.2f goroutines/stream, %d usable, opened in %v",
			r.Streams, r.BytesBoth, r.GoroutinesPer, r.Usable, r.Open.Round(time.Millisecond))
	}
	return nil
}

// ---- statistics and formatting ----

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	c := slices.Clone(v)
	slices.Sort(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

// percentile of sorted samples, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() (string, int) {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown", runtime.NumCPU()
	}
	model, n := "unknown", 0
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			model = strings.TrimSpace(v)
		case "processor":
			n++
		}
	}
	return model, n
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// codeVersion names the code measured: the commit, and when the work
// tree differs from it outside bench/ and docs/, which files and a hash of
// the difference, so runs of different uncommitted code can be told apart.
func codeVersion() string {
	out, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (not a git work tree)"
	}
	v := "commit " + strings.TrimSpace(string(out))
	diff, err := exec.Command("git", "-C", "..", "diff", "HEAD", "--", ".", ":(exclude)bench", ":(exclude)docs").Output()
	if err != nil || len(diff) == 0 {
		return v
	}
	files, _ := exec.Command("git", "-C", "..", "diff", "HEAD", "--name-only", "--", ".", ":(exclude)bench", ":(exclude)docs").Output()
	sum := sha256.Sum256(diff)
	return fmt.Sprintf("%s plus uncommitted changes to %s (diff sha256 %x)", v,
		strings.Join(strings.Fields(string(files)), ", "), sum[:4])
}
