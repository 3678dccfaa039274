package cable

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by methods of a closed Cable.
var ErrClosed = errors.New("cable closed")

// DefaultBitsPerByte is the line bits per byte of 8N1 framing: a start bit,
// 8 data bits and a stop bit.
const DefaultBitsPerByte = 10

// Config configures a Cable.
type Config struct {
	// PathA and PathB are where the two ends appear, as symbolic links to
	// the pseudo-terminals. An existing symbolic link there is replaced;
	// any other existing file is an error.
	PathA, PathB string
	// Baud is the line speed in bits per second, e.g. 115200; 0 carries
	// bytes as fast as possible.
	Baud int
	// BitsPerByte is how many bit times a byte takes on the line; 0 means
	// DefaultBitsPerByte (8N1). 115200 baud at 10 bits per byte carries
	// 11520 bytes per second each way.
	BitsPerByte float64
	// Faults are injected into both directions, each direction drawing its
	// own random events.
	Faults Faults
	// FaultsBA, when set, are the faults of the B→A direction instead, and
	// Faults apply to A→B only.
	FaultsBA *Faults
	// Latency, when positive, makes each end deliver what it receives the
	// way a USB serial adapter with this latency timer does (FTDI: 16 ms by
	// default): in batches of up to USBPacket bytes, a batch going out when
	// it is full or when the timer expires. Zero: bytes are delivered as
	// they arrive.
	Latency time.Duration
	// FixedRate paces both directions at Baud whatever speed the ends'
	// programs set, and never garbles bytes for a rate mismatch. Without
	// it a paced cable follows the ends' speeds: both ends start at Baud;
	// each direction is paced at the speed its sending end set, and bytes
	// arrive garbled (misframed) when the receiving end listens at another
	// speed, as on a real line. An unpaced cable (Baud 0) ignores speeds.
	FixedRate bool
	// MaxBaud, when positive, is the fastest rate the cable carries (a
	// long or poor cable, a slow isolator): what an end sends faster
	// arrives as garbage. It applies to a cable that follows the ends'
	// rates, and must be at least Baud.
	MaxBaud int
	// MarginalBaud and MarginalBER, both positive, make the cable carry
	// the rates above MarginalBaud (up to MaxBaud, if set) badly, as a
	// long cable does: what an end sends faster than MarginalBaud arrives
	// with bit errors at MarginalBER. Like MaxBaud it applies to a cable
	// that follows the ends' rates.
	MarginalBaud int
	MarginalBER  float64
	// HalfDuplex makes the cable a two-wire bus (RS-485, a radio modem)
	// instead of a wire each way: bytes both ends send at the same time
	// collide and arrive garbled at both, and each end hears its own
	// bytes. It needs a paced cable (Baud > 0).
	HalfDuplex bool
	// UnplugEvery and UnplugFor unplug the cable on a schedule: every
	// UnplugEvery (from the start) for UnplugFor. Both zero: only Unplug
	// unplugs.
	UnplugEvery, UnplugFor time.Duration
	// Seed seeds the fault injection; runs with the same seed and the same
	// traffic inject the same faults. 0 picks a random seed (see Seed).
	Seed uint64
	// ReportEvery logs a summary of the traffic and faults at info level at
	// this interval, when anything changed; 0 logs one only at Close.
	ReportEvery time.Duration
	// Log receives the cable's messages: each injected fault at debug
	// level (bit flips only in the summaries), unplugs and summaries at
	// info. Nil discards them.
	Log *slog.Logger
}

// DirectionStats counts the traffic and faults of one direction.
type DirectionStats struct {
	// Read is the bytes taken from the sending end; Written the bytes
	// delivered to the receiving end, after faults.
	Read, Written int64
	// BitsFlipped counts bit errors, Dropped lost bytes, Inserted garbage
	// bytes added.
	BitsFlipped, Dropped, Inserted int64
	// DupChunks counts duplicated chunks, Duplicated the bytes they repeated.
	DupChunks, Duplicated int64
	// Garbled counts bytes replaced by noise bursts, Bursts the bursts.
	Garbled, Bursts int64
	// Misframed counts bytes sent while the receiving end listened at
	// another speed, delivered as what it would make of them.
	Misframed int64
	// Collided counts bytes of this direction garbled because the other
	// end transmitted at the same time, Echoed the bytes the sending end
	// heard of its own (half-duplex cables only).
	Collided, Echoed int64
	// Overspeed counts bytes sent faster than Config.MaxBaud, delivered
	// as garbage.
	Overspeed int64
	// Marginal counts bytes sent faster than Config.MarginalBaud (and not
	// faster than MaxBaud), delivered with bit errors (counted in
	// BitsFlipped).
	Marginal int64
}

// String summarizes s in one line, naming only the faults that happened,
// e.g. "20000 bytes in, 19980 out (167 bits flipped, 20 dropped)".
func (s DirectionStats) String() string {
	str := fmt.Sprintf("%d bytes in, %d out", s.Read, s.Written)
	var faults []string
	add := func(n int64, format string, a ...any) {
		if n != 0 {
			faults = append(faults, fmt.Sprintf(format, a...))
		}
	}
	add(s.BitsFlipped, "%d bits flipped", s.BitsFlipped)
	add(s.Dropped, "%d dropped", s.Dropped)
	add(s.Inserted, "%d inserted", s.Inserted)
	add(s.DupChunks, "%d chunks duplicated (%d bytes)", s.DupChunks, s.Duplicated)
	add(s.Bursts, "%d noise bursts (%d bytes garbled)", s.Bursts, s.Garbled)
	add(s.Misframed, "%d bytes sent at a rate the other end does not listen at", s.Misframed)
	add(s.Collided, "%d bytes collided with the other end's", s.Collided)
	add(s.Overspeed, "%d bytes sent faster than the cable carries", s.Overspeed)
	add(s.Marginal, "%d bytes sent at a rate the cable carries badly", s.Marginal)
	if len(faults) > 0 {
		str += " (" + strings.Join(faults, ", ") + ")"
	}
	return str
}

// Stats counts what a Cable carried and injected.
type Stats struct {
	// AtoB and BtoA count each direction: A→B carries what is written at
	// PathA to PathB.
	AtoB, BtoA DirectionStats
	// Unplugs counts the times the cable was unplugged.
	Unplugs int64
}

// String summarizes s in one line.
func (s Stats) String() string {
	return fmt.Sprintf("A→B %v; B→A %v; unplugged %d times", s.AtoB, s.BtoA, s.Unplugs)
}

// Cable is a running virtual null-modem cable.
type Cable struct {
	cfg   Config
	log   *slog.Logger
	rate  float64 // bytes per second each way; 0: unpaced
	seed  uint64
	start time.Time
	dirs  [2]*direction // A→B, B→A
	bus   *bus          // the shared medium of a half-duplex cable, else nil

	mu        sync.Mutex
	closed    bool
	plugged   bool
	ends      [2]*end
	pumps     sync.WaitGroup
	replug    *time.Timer
	replugGen uint64
	unplugs   atomic.Int64

	stop     chan struct{} // closed by Close: stops the schedules
	finished chan struct{} // closed when the first Close has done its work
	bg       sync.WaitGroup
	stopCtx  func() bool
	lastSeen Stats
}

// end is one end of the cable: a pseudo-terminal and its symbolic link.
type end struct {
	master *os.File // in the runtime poller, so Close interrupts I/O
	slave  *os.File // held open so the master never sees the slave closed
	name   string   // the slave's device path, e.g. /dev/pts/3
	link   string   // the symbolic link to it, e.g. /tmp/ttyA
	label  string   // "A" or "B"
}

// Start creates the cable's pseudo-terminals and links and starts carrying
// bytes. The cable runs until Close is called or ctx ends; either removes
// the links.
func Start(ctx context.Context, cfg Config) (*Cable, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seed := cfg.Seed
	for seed == 0 {
		seed = rand.Uint64()
	}
	fBA := cfg.Faults
	if cfg.FaultsBA != nil {
		fBA = *cfg.FaultsBA
	}
	c := &Cable{
		cfg:      cfg,
		log:      log,
		seed:     seed,
		start:    time.Now(),
		stop:     make(chan struct{}),
		finished: make(chan struct{}),
		dirs: [2]*direction{
			newDirection("A→B", cfg.Faults, seed, 1, log),
			newDirection("B→A", fBA, seed, 2, log),
		},
	}
	if cfg.Baud > 0 {
		c.rate = float64(cfg.Baud) / cfg.BitsPerByte
	}
	if cfg.HalfDuplex {
		c.bus = &bus{}
	}
	c.mu.Lock()
	err := c.plugLocked()
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}

	speed := "unpaced"
	if c.rate > 0 {
		speed = fmt.Sprintf("%d baud, %d bytes/s each way", cfg.Baud, int(c.rate))
		if !cfg.FixedRate && followsRates {
			speed += ", following the rates the ends set"
		}
		if cfg.MarginalBaud > 0 {
			speed += fmt.Sprintf(", rates above %d with bit errors at %g", cfg.MarginalBaud, cfg.MarginalBER)
		}
		if cfg.HalfDuplex {
			speed = fmt.Sprintf("%d baud, %d bytes/s on one half-duplex bus: bytes sent at once by both ends collide, each end hears its own", cfg.Baud, int(c.rate))
		}
	}
	if cfg.Latency > 0 {
		speed += fmt.Sprintf(", USB latency %v", cfg.Latency)
	}
	log.Info(fmt.Sprintf("cable %s <-> %s up (%s)", cfg.PathA, cfg.PathB, speed),
		"faults A→B", c.dirs[0].faults.String(), "faults B→A", c.dirs[1].faults.String(), "seed", seed)

	for _, d := range c.dirs {
		if d.faults.BurstEvery > 0 {
			c.every(d.faults.BurstEvery, func() { c.noiseBurst(d) })
		}
	}
	if cfg.UnplugEvery > 0 {
		c.every(cfg.UnplugEvery, func() {
			c.mu.Lock()
			plugged := c.plugged
			c.mu.Unlock()
			if plugged {
				_ = c.Unplug(cfg.UnplugFor)
			}
		})
	}
	if cfg.ReportEvery > 0 {
		c.every(cfg.ReportEvery, func() { c.report(false) })
	}
	c.mu.Lock()
	c.stopCtx = context.AfterFunc(ctx, func() { _ = c.Close() })
	c.mu.Unlock()
	return c, nil
}

func validate(cfg *Config) error {
	if cfg.PathA == "" || cfg.PathB == "" {
		return errors.New("cable: both paths are required")
	}
	a, errA := filepath.Abs(cfg.PathA)
	b, errB := filepath.Abs(cfg.PathB)
	if errA == nil && errB == nil && a == b {
		return fmt.Errorf("cable: both ends at the same path %s", cfg.PathA)
	}
	if cfg.Baud < 0 {
		return fmt.Errorf("cable: baud rate %d must not be negative (0 means unpaced)", cfg.Baud)
	}
	if cfg.BitsPerByte == 0 {
		cfg.BitsPerByte = DefaultBitsPerByte
	}
	if !(cfg.BitsPerByte >= 1 && cfg.BitsPerByte <= 64) {
		return fmt.Errorf("cable: %v bits per byte is not plausible (8N1 is 10)", cfg.BitsPerByte)
	}
	if cfg.FaultsBA != nil {
		if err := cfg.Faults.validate("A→B"); err != nil {
			return err
		}
		if err := cfg.FaultsBA.validate("B→A"); err != nil {
			return err
		}
	} else if err := cfg.Faults.validate("line"); err != nil {
		return err
	}
	if err := checkPeriod("unplug", cfg.UnplugEvery, cfg.UnplugFor); err != nil {
		return err
	}
	if cfg.MaxBaud != 0 && (cfg.MaxBaud < cfg.Baud || cfg.Baud == 0 || cfg.FixedRate) {
		return fmt.Errorf("cable: --max-baud %d needs a cable that follows the ends' rates, starting at or below it (--baud %d)", cfg.MaxBaud, cfg.Baud)
	}
	if cfg.MarginalBaud < 0 || math.IsNaN(cfg.MarginalBER) || cfg.MarginalBER < 0 || cfg.MarginalBER > 1 {
		return fmt.Errorf("cable: --marginal-above %d must not be negative, --marginal-ber %v must be a probability between 0 and 1", cfg.MarginalBaud, cfg.MarginalBER)
	}
	if (cfg.MarginalBaud > 0) != (cfg.MarginalBER > 0) {
		return errors.New("cable: --marginal-above and --marginal-ber go together")
	}
	if cfg.MarginalBaud > 0 && (cfg.Baud == 0 || cfg.FixedRate || cfg.MarginalBaud < cfg.Baud || cfg.MaxBaud != 0 && cfg.MarginalBaud >= cfg.MaxBaud) {
		return fmt.Errorf("cable: --marginal-above %d needs a cable that follows the ends' rates, starting at or below it (--baud %d) and, with --max-baud, below that", cfg.MarginalBaud, cfg.Baud)
	}
	if cfg.HalfDuplex && cfg.Baud == 0 {
		return errors.New("cable: a half-duplex cable needs a baud rate (collisions are a matter of time on the line)")
	}
	if cfg.ReportEvery < 0 {
		return errors.New("cable: report interval must not be negative")
	}
	if cfg.Latency < 0 || cfg.Latency > time.Second {
		return fmt.Errorf("cable: latency %v must be between 0 and 1s (an FTDI adapter's timer is 1 to 255 ms)", cfg.Latency)
	}
	return nil
}

// every runs fn at start+period, start+2*period, ... until Close.
func (c *Cable) every(period time.Duration, fn func()) {
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		t := time.NewTimer(time.Until(c.start.Add(period)))
		defer t.Stop()
		for k := 2; ; k++ {
			select {
			case <-c.stop:
				return
			case <-t.C:
			}
			fn()
			t.Reset(time.Until(c.start.Add(time.Duration(k) * period)))
		}
	}()
}

// noiseBurst garbles d's line for its BurstFor.
func (c *Cable) noiseBurst(d *direction) {
	d.bursts.Add(1)
	d.burst.Store(true)
	c.log.Debug("cable: noise burst", "dir", d.name, "for", d.faults.BurstFor)
	t := time.NewTimer(d.faults.BurstFor)
	defer t.Stop()
	select {
	case <-c.stop:
	case <-t.C:
	}
	d.burst.Store(false)
}

// Seed returns the seed of the fault injection, the one configured or the
// random one picked, to reproduce a run.
func (c *Cable) Seed() uint64 { return c.seed }

// Plugged reports whether the cable is plugged in.
func (c *Cable) Plugged() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.plugged
}

// Devices returns the pseudo-terminal devices the paths currently link to,
// or empty strings while the cable is unplugged.
func (c *Cable) Devices() (a, b string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.plugged {
		return "", ""
	}
	return c.ends[0].name, c.ends[1].name
}

// Unplug pulls the cable out and returns once it is out: the two paths are
// removed, so opening them fails, and the pseudo-terminals are closed, so
// ports open on them see a hang-up (reads return end of file or fail,
// writes fail with EIO). After d the cable is plugged back in with new
// pseudo-terminals at the same paths; d <= 0 leaves it out until Replug.
// Unplugging a cable that is out only changes when it comes back.
func (c *Cable) Unplug(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.plugged {
		c.unplugLocked()
		c.unplugs.Add(1)
		if d > 0 {
			c.log.Info(fmt.Sprintf("cable unplugged for %v", d))
		} else {
			c.log.Info("cable unplugged")
		}
	}
	c.scheduleReplugLocked(d)
	return nil
}

// Replug plugs the cable back in now, if it is out, with new
// pseudo-terminals at the same paths, and returns once they are there.
func (c *Cable) Replug() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.scheduleReplugLocked(0)
	if c.plugged {
		return nil
	}
	if err := c.plugLocked(); err != nil {
		return err
	}
	c.log.Info("cable plugged back in")
	return nil
}

// scheduleReplugLocked cancels a pending replug and, if d > 0, schedules
// one after d.
func (c *Cable) scheduleReplugLocked(d time.Duration) {
	if c.replug != nil {
		c.replug.Stop()
		c.replug = nil
	}
	c.replugGen++
	if d <= 0 {
		return
	}
	gen := c.replugGen
	c.replug = time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed || gen != c.replugGen || c.plugged {
			return
		}
		if err := c.plugLocked(); err != nil {
			c.log.Error(fmt.Sprintf("cable: cannot plug back in: %v; retrying in 1s", err))
			c.scheduleReplugLocked(time.Second)
			return
		}
		c.log.Info("cable plugged back in")
	})
}

// plugLocked creates the ends, links them and starts the pumps.
func (c *Cable) plugLocked() error {
	var ends [2]*end
	undo := func() {
		for _, e := range ends {
			if e != nil {
				unlinkPath(e)
				_ = e.master.Close()
				_ = e.slave.Close()
			}
		}
	}
	for i := range ends {
		e, err := openEnd()
		if err != nil {
			undo()
			return err
		}
		ends[i] = e
	}
	for i, path := range []string{c.cfg.PathA, c.cfg.PathB} {
		ends[i].label = string(rune('A' + i))
		if c.rate > 0 && !c.cfg.FixedRate && followsRates {
			// Both ends start at Baud: a program that sets no speed
			// gets it, and one that sets another is told apart.
			if err := setEndSpeed(ends[i].slave, c.cfg.Baud); err != nil {
				c.log.Warn(fmt.Sprintf("cable: cannot set %s to %d baud: %v", ends[i].name, c.cfg.Baud, err))
			}
		}
		if err := linkPath(ends[i].name, path); err != nil {
			undo()
			return err
		}
		ends[i].link = path
	}
	c.ends = ends
	c.plugged = true
	c.pumps.Add(2)
	go c.pump(c.dirs[0], ends[0], ends[1])
	go c.pump(c.dirs[1], ends[1], ends[0])
	c.log.Debug("cable: plugged in", "A", ends[0].name, "B", ends[1].name)
	return nil
}

// unplugLocked removes the links, closes the ends and waits for the pumps.
func (c *Cable) unplugLocked() {
	for _, e := range c.ends {
		unlinkPath(e)
	}
	for _, e := range c.ends {
		_ = e.master.Close()
	}
	c.pumps.Wait()
	for _, e := range c.ends {
		_ = e.slave.Close()
	}
	c.ends = [2]*end{}
	c.plugged = false
}

// linkPath makes path a symbolic link to target, atomically replacing an
// older symbolic link and refusing to replace anything else.
func linkPath(target, path string) error {
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink == 0:
		return fmt.Errorf("cable: refusing to replace %s: it exists and is not a symbolic link", path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cable: %w", err)
	}
	tmp := fmt.Sprintf("%s.cable-%d-%d", path, os.Getpid(), rand.Uint32())
	if err := os.Symlink(target, tmp); err != nil {
		return linkError(path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return linkError(path, err)
	}
	return nil
}

// linkError says why the link at path cannot be made, naming the path the
// user gave rather than the temporary one.
func linkError(path string, err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	if dir := filepath.Dir(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cable: cannot create the link %s: directory %s does not exist", path, dir)
	}
	return fmt.Errorf("cable: cannot create the link %s: %w", path, err)
}

// unlinkPath removes e's link if it still points to e.
func unlinkPath(e *end) {
	if e == nil || e.link == "" {
		return
	}
	if t, err := os.Readlink(e.link); err == nil && t == e.name {
		_ = os.Remove(e.link)
	}
}

// Stats returns the counters so far.
func (c *Cable) Stats() Stats {
	return Stats{AtoB: c.dirs[0].stats(), BtoA: c.dirs[1].stats(), Unplugs: c.unplugs.Load()}
}

// report logs the summary; periodic reports are skipped when nothing
// changed.
func (c *Cable) report(final bool) {
	s := c.Stats()
	if !final && s == c.lastSeen {
		return
	}
	c.lastSeen = s
	prefix := "cable stats"
	if final {
		prefix = "cable closed"
	}
	c.log.Info(fmt.Sprintf("%s: %v", prefix, s))
}

// Close unplugs the cable for good, removing its links, and logs a final
// summary. Closing twice is harmless; a second Close, from any goroutine,
// returns only once the first has finished, summary logged.
func (c *Cable) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.finished
		return nil
	}
	c.closed = true
	c.scheduleReplugLocked(0)
	if c.plugged {
		c.unplugLocked()
	}
	stopCtx := c.stopCtx
	c.mu.Unlock()
	close(c.stop)
	c.bg.Wait()
	if stopCtx != nil {
		stopCtx()
	}
	c.report(true)
	close(c.finished)
	return nil
}
