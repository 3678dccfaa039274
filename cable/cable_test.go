//go:build linux

package cable

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockmux/sockmux/internal/fdctl"
	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// startCable starts a cable between two paths in a test directory.
func startCable(t *testing.T, cfg Config) *Cable {
	t.Helper()
	dir := t.TempDir()
	if cfg.PathA == "" {
		cfg.PathA = filepath.Join(dir, "ttyA")
		cfg.PathB = filepath.Join(dir, "ttyB")
	}
	if cfg.Seed == 0 {
		cfg.Seed = 42
	}
	c, err := Start(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// openEnd opens a cable end the way a program would.
func openPath(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// readUntilIdle reads from f until want bytes arrived or nothing arrived for
// idle, and returns what arrived.
func readUntilIdle(t *testing.T, f *os.File, want int, idle time.Duration) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, 64<<10)
	for len(got) < want {
		require.NoError(t, f.SetReadDeadline(time.Now().Add(idle)))
		n, err := f.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		require.NoError(t, err)
	}
	return got
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeAsync(t *testing.T, f *os.File, data []byte) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := f.Write(data)
		done <- err
	}()
	return done
}

func TestCarriesBothWaysUnpaced(t *testing.T) {
	c := startCable(t, Config{})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	ab, ba := randomBytes(1, 200<<10), randomBytes(2, 150<<10)
	wa, wb := writeAsync(t, a, ab), writeAsync(t, b, ba)

	var gotAB, gotBA []byte
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); gotAB = readUntilIdle(t, b, len(ab), 2*time.Second) }()
	go func() { defer wg.Done(); gotBA = readUntilIdle(t, a, len(ba), 2*time.Second) }()
	wg.Wait()
	require.NoError(t, <-wa)
	require.NoError(t, <-wb)
	assert.True(t, bytes.Equal(ab, gotAB), "A→B: sent %d bytes, got %d, not equal", len(ab), len(gotAB))
	assert.True(t, bytes.Equal(ba, gotBA), "B→A: sent %d bytes, got %d, not equal", len(ba), len(gotBA))

	s := c.Stats()
	assert.EqualValues(t, len(ab), s.AtoB.Read)
	assert.EqualValues(t, len(ab), s.AtoB.Written)
	assert.EqualValues(t, len(ba), s.BtoA.Written)
	assert.Zero(t, s.AtoB.BitsFlipped+s.AtoB.Dropped+s.AtoB.Inserted+s.AtoB.Duplicated+s.AtoB.Garbled)
}

func TestPacedLikeAUART(t *testing.T) {
	const baud, rate = 115200, 11520
	c := startCable(t, Config{Baud: baud})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	data := randomBytes(3, rate*2) // two seconds of line time
	start := time.Now()
	done := writeAsync(t, a, data)

	// The writer is far ahead of the line: its bytes wait in the kernel's
	// terminal buffers on the sending side, not in the cable.
	time.Sleep(200 * time.Millisecond)
	var queued int
	require.NoError(t, fdctl.Control(c.ends[0].master, func(fd int) (err error) {
		queued, err = unix.IoctlGetInt(fd, unix.TIOCINQ)
		return err
	}))
	assert.Greater(t, queued, 1000, "bytes written faster than the line rate should wait in the kernel")

	got := make([]byte, 0, len(data))
	buf := make([]byte, 4096)
	var first time.Time
	firstN := 0
	for len(got) < len(data) {
		require.NoError(t, b.SetReadDeadline(time.Now().Add(2*time.Second)))
		n, err := b.Read(buf)
		require.NoError(t, err)
		if first.IsZero() {
			first, firstN = time.Now(), n
		}
		got = append(got, buf[:n]...)
	}
	elapsed := time.Since(first)
	require.NoError(t, <-done)
	require.True(t, bytes.Equal(data, got), "paced data differs")

	measured := float64(len(got)-firstN) / elapsed.Seconds()
	t.Logf("measured %.0f bytes/s over %v (total %v)", measured, elapsed, time.Since(start))
	assert.InEpsilon(t, rate, measured, 0.03, "line rate")
}

func TestPacerLongRunAccuracy(t *testing.T) {
	// The pacer counts from a fixed start: however late its sleeps end, the
	// total carried tracks rate × time.
	p := newPacer(11520, false)
	carried := 0
	for time.Since(p.start) < 300*time.Millisecond {
		n := p.allowance()
		p.took(n, false)
		carried += n
	}
	expect := 11520 * time.Since(p.start).Seconds()
	assert.InDelta(t, expect, float64(carried), float64(p.burst)+2)

	// A busy line the pump fell behind catches up...
	time.Sleep(20 * time.Millisecond)
	behind := p.due() - p.used
	assert.Greater(t, behind, p.burst)
	assert.EqualValues(t, p.burst, p.allowance())
	// ...but bytes that arrive on an idle line get only a burst's worth of
	// saved-up time.
	p.took(1, true)
	assert.LessOrEqual(t, p.due()-p.used, p.burst)
}

func TestSlowBaudCarriesSingleBytes(t *testing.T) {
	// 300 baud: 30 bytes/s, one byte at a time.
	c := startCable(t, Config{Baud: 300})
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	_, err := a.Write([]byte("hello"))
	require.NoError(t, err)
	got := readUntilIdle(t, b, 5, time.Second)
	assert.Equal(t, "hello", string(got))
}

// faultRun sends n random bytes A→B through a cable with faults and returns
// what was sent, what arrived and the stats.
func faultRun(t *testing.T, cfg Config, n int) (sent, got []byte, s Stats) {
	t.Helper()
	cfg.FaultsBA = &Faults{}
	c := startCable(t, cfg)
	a, b := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	sent = randomBytes(4, n)
	done := writeAsync(t, a, sent)
	got = readUntilIdle(t, b, 1<<30, 500*time.Millisecond)
	require.NoError(t, <-done)
	s = c.Stats()
	assert.EqualValues(t, n, s.AtoB.Read)
	assert.EqualValues(t, len(got), s.AtoB.Written)
	assert.Zero(t, s.BtoA.BitsFlipped+s.BtoA.Dropped+s.BtoA.Inserted+s.BtoA.Duplicated)
	return sent, got, s
}

// assertAbout checks that a count of Poisson-like events is within 5
// standard deviations of what is expected.
func assertAbout(t *testing.T, expected float64, got int64, what string) {
	t.Helper()
	tol := 5 * math.Sqrt(expected)
	assert.InDelta(t, expected, float64(got), tol, "%s: expected about %.0f, got %d", what, expected, got)
}

func TestBitErrors(t *testing.T) {
	const n, ber = 50000, 1e-3
	sent, got, s := faultRun(t, Config{Faults: Faults{BER: ber}}, n)
	require.Len(t, got, n)
	flipped := 0
	for i := range sent {
		flipped += bits.OnesCount8(sent[i] ^ got[i])
	}
	assert.EqualValues(t, flipped, s.AtoB.BitsFlipped, "counted flips vs differing bits")
	assertAbout(t, 8*n*ber, s.AtoB.BitsFlipped, "bit flips")
}

func TestDrops(t *testing.T) {
	const n, rate = 50000, 0.01
	_, got, s := faultRun(t, Config{Faults: Faults{DropRate: rate}}, n)
	assertAbout(t, n*rate, s.AtoB.Dropped, "drops")
	assert.EqualValues(t, n-s.AtoB.Dropped, len(got))
}

func TestInserts(t *testing.T) {
	const n, rate = 50000, 0.01
	_, got, s := faultRun(t, Config{Faults: Faults{InsertRate: rate}}, n)
	assertAbout(t, n*rate, s.AtoB.Inserted, "inserts")
	assert.EqualValues(t, n+s.AtoB.Inserted, len(got))
}

func TestDuplicates(t *testing.T) {
	const n, rate = 50000, 0.005
	_, got, s := faultRun(t, Config{Faults: Faults{DupRate: rate}}, n)
	assertAbout(t, n*rate, s.AtoB.DupChunks, "duplicated chunks")
	assert.EqualValues(t, n+s.AtoB.Duplicated, len(got))
	assert.GreaterOrEqual(t, s.AtoB.Duplicated, s.AtoB.DupChunks)
	assert.LessOrEqual(t, s.AtoB.Duplicated, maxDupChunk*s.AtoB.DupChunks)
}

func TestNoiseBursts(t *testing.T) {
	const rate = 11520
	cfg := Config{Baud: 115200, Faults: Faults{BurstEvery: 100 * time.Millisecond, BurstFor: 25 * time.Millisecond}}
	sent, got, s := faultRun(t, cfg, rate) // one second of line time
	require.Len(t, got, len(sent))
	differ := 0
	for i := range sent {
		if sent[i] != got[i] {
			differ++
		}
	}
	frac := float64(s.AtoB.Garbled) / float64(len(sent))
	t.Logf("%d bursts garbled %d bytes (%.0f%%), %d differ", s.AtoB.Bursts, s.AtoB.Garbled, 100*frac, differ)
	assert.InDelta(t, 0.25, frac, 0.08, "fraction of the line time in bursts")
	assert.GreaterOrEqual(t, s.AtoB.Bursts, int64(9))
	// A garbled byte keeps its value by chance one time in 256.
	assert.InDelta(t, float64(s.AtoB.Garbled), float64(differ), float64(s.AtoB.Garbled)/50+5)
}

func TestSeedReproducible(t *testing.T) {
	cfg := Config{Seed: 7, Faults: Faults{BER: 1e-3, DropRate: 1e-3, InsertRate: 1e-3, DupRate: 1e-3}}
	_, got1, _ := faultRun(t, cfg, 20000)
	_, got2, _ := faultRun(t, cfg, 20000)
	assert.True(t, bytes.Equal(got1, got2), "same seed, same traffic: same faults")
}

func TestUnplugOnDemand(t *testing.T) {
	c := startCable(t, Config{})
	a := openPath(t, c.cfg.PathA)
	oldA, _ := c.Devices()

	require.NoError(t, c.Unplug(300*time.Millisecond))
	assert.False(t, c.Plugged())
	_, err := os.Lstat(c.cfg.PathA)
	assert.ErrorIs(t, err, fs.ErrNotExist, "path A gone while unplugged")
	_, err = os.Lstat(c.cfg.PathB)
	assert.ErrorIs(t, err, fs.ErrNotExist, "path B gone while unplugged")
	_, err = os.OpenFile(c.cfg.PathA, os.O_RDWR, 0)
	assert.Error(t, err)

	// The port opened before sees the hang-up.
	require.NoError(t, a.SetReadDeadline(time.Now().Add(time.Second)))
	_, err = a.Read(make([]byte, 10))
	assert.True(t, err == io.EOF || errors.Is(err, unix.EIO), "read after unplug: %v", err)
	_, err = a.Write([]byte("x"))
	assert.ErrorIs(t, err, unix.EIO)

	require.Eventually(t, c.Plugged, 2*time.Second, 10*time.Millisecond)
	newA, _ := c.Devices()
	assert.NotEqual(t, oldA, newA, "a new pseudo-terminal after replug")
	target, err := os.Readlink(c.cfg.PathA)
	require.NoError(t, err)
	assert.Equal(t, newA, target)

	// And it carries again.
	a2, b2 := openPath(t, c.cfg.PathA), openPath(t, c.cfg.PathB)
	_, err = a2.Write([]byte("again"))
	require.NoError(t, err)
	assert.Equal(t, "again", string(readUntilIdle(t, b2, 5, time.Second)))
	assert.EqualValues(t, 1, c.Stats().Unplugs)
}

func TestUnplugUntilReplug(t *testing.T) {
	c := startCable(t, Config{})
	require.NoError(t, c.Unplug(0))
	require.NoError(t, c.Unplug(0)) // already out: no second unplug
	time.Sleep(100 * time.Millisecond)
	assert.False(t, c.Plugged())
	require.NoError(t, c.Replug())
	assert.True(t, c.Plugged())
	_, err := os.Stat(c.cfg.PathA)
	assert.NoError(t, err)
	assert.EqualValues(t, 1, c.Stats().Unplugs)
}

func TestUnplugSchedule(t *testing.T) {
	c := startCable(t, Config{UnplugEvery: 200 * time.Millisecond, UnplugFor: 80 * time.Millisecond})
	deadline := time.Now().Add(time.Second)
	sawOut := false
	for time.Now().Before(deadline) {
		if _, err := os.Lstat(c.cfg.PathA); err != nil {
			sawOut = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	assert.True(t, sawOut, "path vanished at some point")
	assert.GreaterOrEqual(t, c.Stats().Unplugs, int64(3))
}

func TestCloseRemovesLinks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	c, err := Start(ctx, Config{PathA: filepath.Join(dir, "a"), PathB: filepath.Join(dir, "b")})
	require.NoError(t, err)
	cancel() // ending the context closes the cable
	require.Eventually(t, func() bool {
		_, errA := os.Lstat(filepath.Join(dir, "a"))
		_, errB := os.Lstat(filepath.Join(dir, "b"))
		return errors.Is(errA, fs.ErrNotExist) && errors.Is(errB, fs.ErrNotExist)
	}, 2*time.Second, 10*time.Millisecond)
	assert.NoError(t, c.Close())
	assert.ErrorIs(t, c.Unplug(time.Second), ErrClosed)
	assert.ErrorIs(t, c.Replug(), ErrClosed)
}

func TestPathHandling(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	require.NoError(t, os.WriteFile(regular, []byte("keep me"), 0o600))
	_, err := Start(context.Background(), Config{PathA: regular, PathB: filepath.Join(dir, "b")})
	require.ErrorContains(t, err, "not a symbolic link")
	data, _ := os.ReadFile(regular)
	assert.Equal(t, "keep me", string(data))
	_, err = os.Lstat(filepath.Join(dir, "b"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "no link left behind after a failed start")

	_, err = Start(context.Background(), Config{PathA: filepath.Join(dir, "nodir", "a"), PathB: filepath.Join(dir, "b")})
	require.EqualError(t, err, "cable: cannot create the link "+filepath.Join(dir, "nodir", "a")+
		": directory "+filepath.Join(dir, "nodir")+" does not exist")

	stale := filepath.Join(dir, "stale")
	require.NoError(t, os.Symlink("/dev/pts/does-not-exist", stale))
	c := startCable(t, Config{PathA: stale, PathB: filepath.Join(dir, "b")})
	target, err := os.Readlink(stale)
	require.NoError(t, err)
	a, _ := c.Devices()
	assert.Equal(t, a, target, "stale symlink replaced")
}

func TestConfigValidation(t *testing.T) {
	ok := Config{PathA: "/tmp/x-a", PathB: "/tmp/x-b"}
	for name, mut := range map[string]func(*Config){
		"missing path":    func(c *Config) { c.PathB = "" },
		"same path":       func(c *Config) { c.PathB = c.PathA },
		"negative baud":   func(c *Config) { c.Baud = -1 },
		"bits per byte":   func(c *Config) { c.BitsPerByte = 0.5 },
		"BER > 1":         func(c *Config) { c.Faults.BER = 1.5 },
		"negative drop":   func(c *Config) { c.Faults.DropRate = -0.1 },
		"burst no for":    func(c *Config) { c.Faults.BurstEvery = time.Second },
		"burst too long":  func(c *Config) { c.Faults.BurstEvery, c.Faults.BurstFor = time.Second, time.Second },
		"unplug no every": func(c *Config) { c.UnplugFor = time.Second },
		"BA faults":       func(c *Config) { c.FaultsBA = &Faults{InsertRate: 2} },
		"unpaced bus":     func(c *Config) { c.HalfDuplex = true },
		"max below baud":  func(c *Config) { c.Baud, c.MaxBaud = 115200, 9600 },
		"max, fixed rate": func(c *Config) { c.Baud, c.MaxBaud, c.FixedRate = 9600, 115200, true },
	} {
		cfg := ok
		mut(&cfg)
		_, err := Start(context.Background(), cfg)
		assert.Error(t, err, name)
		if err != nil {
			assert.True(t, strings.HasPrefix(err.Error(), "cable: "), "%s: %v", name, err)
		}
	}
}

func TestLogsFaultsAndSummary(t *testing.T) {
	var buf testutil.LogBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{Log: log, ReportEvery: 50 * time.Millisecond, Faults: Faults{BER: 1e-3, DropRate: 1e-2}}
	faultRun(t, cfg, 5000)
	time.Sleep(100 * time.Millisecond)
	out := buf.String()
	assert.Contains(t, out, "dropped a byte")
	assert.Contains(t, out, "cable stats")
	assert.Contains(t, out, "bits flipped")
	assert.NotContains(t, out, "flipped a bit", "bit flips are only summarized")
}

func fileThere(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestCloseWaitsForACloseUnderWay: "sockmux cable" closes the cable both
// from its signal context and from its main loop; the second Close must not
// return (and let the program exit) before the first has logged the final
// summary.
func TestCloseWaitsForACloseUnderWay(t *testing.T) {
	for i := range 20 {
		var buf testutil.LogBuffer
		ctx, cancel := context.WithCancel(context.Background())
		dir := t.TempDir()
		c, err := Start(ctx, Config{PathA: filepath.Join(dir, "a"), PathB: filepath.Join(dir, "b"),
			Log: slog.New(slog.NewTextHandler(&buf, nil))})
		require.NoError(t, err)
		cancel() // a Close starts in the background
		for fileThere(filepath.Join(dir, "a")) {
			runtime.Gosched() // until it is under way
		}
		require.NoError(t, c.Close())
		require.Contains(t, buf.String(), "cable closed", "run %d: the summary is logged when Close returns", i)
	}
}
