//go:build unix

package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSoak runs mixed traffic over a faulty virtual serial cable for
// SOCKMUX_SOAK (a duration, e.g. 30m; make soak DURATION=30m), printing
// progress, and checks that both sockmux processes come back to where
// they started: goroutines, open files and threads when idle, and memory
// that stops growing once warm.
//
// The processes' goroutines are read from the Go runtime's own scheduler
// trace (GODEBUG=schedtrace,scheddetail on their stderr), which lists
// every goroutine with its state; sockmux needs no debug hook for it.
func TestSoak(t *testing.T) {
	spec := os.Getenv("SOCKMUX_SOAK")
	if spec == "" {
		t.Skip("set SOCKMUX_SOAK=30m (make soak DURATION=30m) to run the soak")
	}
	duration, err := time.ParseDuration(spec)
	require.NoError(t, err, "SOCKMUX_SOAK")
	every := max(10*time.Second, min(time.Minute, duration/30))
	t.Setenv("GODEBUG", "schedtrace=5000,scheddetail=1")

	f := fault{name: "soak", baud: 115200, scale: 1, cable: []string{"--ber", "1e-5",
		"--burst-every", "20s", "--burst-for", "200ms", "--unplug-every", "90s", "--unplug-for", "3s"}}
	e := startCell(t, f)
	procs := []*proc{e.a, e.b}
	time.Sleep(6 * time.Second) // a scheduler trace or so
	idle0 := soakMeasure(t, procs)
	t.Logf("idle before traffic: %s", idle0)

	e.deadline = time.Now().Add(duration + 5*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	worker := func(i int, run func(r *rand.Rand) (int64, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				e.stream(func() (int64, error) { return run(r) })
			}
		}()
	}
	for i := range 2 { // bulk, one from each end
		worker(i, func(r *rand.Rand) (int64, error) {
			n := int64(16<<10 + r.IntN(64<<10))
			return faultTransfer(e.entrance(i), n, n, r.Uint64(), e.deadline)
		})
	}
	for i := range 4 { // interactive
		worker(10+i, func(r *rand.Rand) (int64, error) {
			return faultEcho(e.entrance(i), 10+r.IntN(20), 200*time.Millisecond, r, e.deadline)
		})
	}
	for i := range 6 { // short connections
		worker(20+i, func(r *rand.Rand) (int64, error) {
			n := int64(1 + r.IntN(1024))
			return faultTransfer(e.entrance(i+r.IntN(2)), n, n, r.Uint64(), e.deadline)
		})
	}

	begin := time.Now()
	var warm soakSample
	tick := time.NewTicker(every)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			s := soakMeasure(t, procs)
			if warm.at.IsZero() && time.Since(begin) >= min(2*time.Minute, duration/5) {
				warm = s
			}
			t.Logf("%6s: streams %d ok %d reset %d stalled %d corrupted %d lost %d, %.1f MiB verified; %s",
				time.Since(begin).Round(time.Second), e.tally.streams.Load(), e.tally.ok.Load(), e.tally.reset.Load(),
				e.tally.stalled.Load(), e.tally.corrupted.Load(), e.tally.lost.Load(), float64(e.tally.bytes.Load())/(1<<20), s)
		}
	}
	wg.Wait()
	time.Sleep(12 * time.Second) // streams wind down; two scheduler traces
	idle1 := soakMeasure(t, procs)
	t.Logf("idle after %v of traffic: %s", duration, idle1)
	t.Logf("links: %d resumed, %d new sessions", e.a.countLog("link resumed")+e.b.countLog("link resumed"),
		e.a.countLog("peer started a new session")+e.b.countLog("peer started a new session"))
	e.tally.mu.Lock()
	for k, v := range e.tally.samples {
		t.Logf("  %s: %s", k, strings.Join(v, " | "))
	}
	e.tally.mu.Unlock()

	assert.Zero(t, e.tally.corrupted.Load(), "corrupted streams")
	assert.Zero(t, e.tally.lost.Load(), "silently lost streams")
	assert.Zero(t, e.tally.stalled.Load(), "hung streams")
	assert.Positive(t, e.tally.ok.Load())
	for i, p := range procs {
		a, b := idle0.procs[i], idle1.procs[i]
		assert.LessOrEqual(t, b.goroutines, a.goroutines+3, "%s: goroutines %d idle before, %d after", p.name, a.goroutines, b.goroutines)
		assert.LessOrEqual(t, b.fds, a.fds+2, "%s: open files %d before, %d after", p.name, a.fds, b.fds)
		if !warm.at.IsZero() {
			w := warm.procs[i]
			assert.LessOrEqual(t, b.rssKiB, max(w.rssKiB*3/2, w.rssKiB+16<<10), "%s: RSS %d KiB when warm, %d KiB at the end", p.name, w.rssKiB, b.rssKiB)
		}
	}
}

// soakProc is what a process uses at one moment.
type soakProc struct {
	name                     string
	goroutines, threads, fds int
	rssKiB                   int
}

type soakSample struct {
	at    time.Time
	procs []soakProc
}

func (s soakSample) String() string {
	var parts []string
	for _, p := range s.procs {
		parts = append(parts, fmt.Sprintf("%s: %d goroutines, %d threads, %d fds, RSS %.1f MiB",
			p.name, p.goroutines, p.threads, p.fds, float64(p.rssKiB)/1024))
	}
	return strings.Join(parts, "; ")
}

func soakMeasure(t *testing.T, procs []*proc) soakSample {
	s := soakSample{at: time.Now()}
	for _, p := range procs {
		pid := p.cmd.Process.Pid
		ps := soakProc{name: p.name, goroutines: liveGoroutines(p.logText())}
		for wait := time.Now().Add(15 * time.Second); ps.goroutines < 0 && time.Now().Before(wait); {
			time.Sleep(500 * time.Millisecond) // no complete scheduler trace yet
			ps.goroutines = liveGoroutines(p.logText())
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		require.NoError(t, err, "%s exited?", p.name)
		ps.rssKiB = procStatusField(string(status), "VmRSS")
		ps.threads = procStatusField(string(status), "Threads")
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		require.NoError(t, err)
		ps.fds = len(fds)
		s.procs = append(s.procs, ps)
	}
	return s
}

func procStatusField(status, field string) int {
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+)`).FindStringSubmatch(status)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// liveGoroutines counts the goroutines that are not dead in the last
// complete scheduler trace of a process's log.
func liveGoroutines(log string) int {
	blocks := strings.Split(log, "\nSCHED ")
	if len(blocks) < 3 {
		return -1
	}
	block := blocks[len(blocks)-2] // the last one may still be being written
	n := 0
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "G") && strings.Contains(line, ": status=") && !strings.Contains(line, "status=6(") {
			n++
		}
	}
	return n
}
