package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/sockmux/sockmux/fec"
)

// Forward error correction (docs/fec.md): on a line (a transport that is
// not reliable) the link offers a Reed–Solomon stage between the frame
// encoder and the transport. The writer's encoded frames go through a
// fec.Writer; the reader's frameReader reads from a fec.Reader. The level
// of each direction is chosen where it is received (a fec.Chooser fed by
// the decoder and, while the code is off, by the frame counts) and told to
// the sender in FEC frames. Everything above the stage (COBS, CRC, ARQ,
// sealing, compression) is as without it.

// FECMode is whether a link offers forward error correction. The zero
// value is FECAuto.
type FECMode int

// The FEC settings.
const (
	// FECAuto offers the code on lines (serial ports: transports that are
	// not reliable), where each direction turns it on, sizes it and turns
	// it off by the error rate it measures; never on TCP, pipes or stdio.
	FECAuto FECMode = iota
	// FECOff never offers it: frames go on the line as they are.
	FECOff
)

// FECModes lists the settings in the order --fec shows them.
var FECModes = []FECMode{FECAuto, FECOff}

func (m FECMode) String() string {
	switch m {
	case FECAuto:
		return "auto"
	case FECOff:
		return "off"
	}
	return fmt.Sprintf("FECMode(%d)", int(m))
}

// ParseFEC reads a --fec value: auto or off.
func ParseFEC(s string) (FECMode, error) {
	for _, m := range FECModes {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("fec %q: want auto or off", s)
}

const (
	// helloFEC is the HELLO flag "I read FEC blocks".
	helloFEC = 0x20
	// extFECBlock is the hello extension holding the codeword length
	// (uvarint) the sender's decoder reads: the peer writes its blocks
	// in that length.
	extFECBlock = 0x03
	// fecHelloLevel is the level our hellos, AUTH messages and first
	// frames go at, until the peer says what it measures: t = 32, which
	// carries a block through BER 1e-2 (a hello of 60 bytes is intact 0.8 %
	// of the time bare there).
	fecHelloLevel = 10
	// fecSlowBlock is the codeword length on lines below fecSlowRate
	// bytes a second: a keystroke waits for a whole block, 272 ms at 9600
	// baud with 255 bytes, 73 ms with 64.
	fecSlowBlock = 64
	fecSlowRate  = 1920 // 19200 baud
)

// checkFECBlock validates Config.FECBlock.
func checkFECBlock(n int) error {
	if n == 0 {
		return nil
	}
	if n < fec.MinBlock || n > fec.DefaultBlock {
		return fmt.Errorf("link: FEC block %d: want %d to %d bytes", n, fec.MinBlock, fec.DefaultBlock)
	}
	return nil
}

// fecBlock is the codeword length this end reads and offers on the
// current transport, 0 when it offers no FEC there.
func (l *Link) fecBlock() int {
	if l.cfg.FEC == FECOff || l.props.Reliable {
		return 0
	}
	if l.cfg.FECBlock != 0 {
		return l.cfg.FECBlock
	}
	if r := l.lineRate(); r > 0 && r < fecSlowRate {
		return fecSlowBlock
	}
	return fec.DefaultBlock
}

// strongest returns the strongest level of at most level valid for n.
func strongest(n, level int) int {
	for level > 0 && !fec.ValidLevel(n, level) {
		level--
	}
	return level
}

// fecHelloBlock reads the codeword length of a peer's hello; 0 when the
// peer reads no FEC blocks (or gave a length we cannot write).
func fecHelloBlock(h *hello) int {
	if h.Flags&helloFEC == 0 {
		return 0
	}
	n := fec.DefaultBlock
	if v, ok := helloExt(h.Ext, extFECBlock); ok {
		u, k := binary.Uvarint(v)
		if k <= 0 || u > math.MaxInt32 {
			return 0
		}
		n = int(u)
	}
	if checkFECBlock(n) != nil {
		return 0
	}
	return n
}

// fecLink is one transport's FEC stage: the writer's side, the reader's
// side, and what the two ends told each other.
type fecLink struct {
	// The writer goroutine's.
	w      *fec.Writer
	wBlock int // w's codeword length

	// Guarded by l.mu.
	peer    bool    // the peer reads FEC blocks: FEC frames flow
	txLevel int     // the level we send at: the hello level, then what the peer asks for
	txBlock int     // the codeword length the peer reads
	expand  float64 // wire bytes per frame byte at the level sent now (queueSample)
	rxLevel int     // the level our chooser wants for what the peer sends
	rxRate  float64 // the bit error rate our chooser measures
	due     bool    // a FEC frame is owed to the peer

	// The reader goroutine's.
	rBlock int
	dec    *fec.Reader
	ch     *fec.Chooser
}

// newFECLink prepares the stage of conn c for codeword length n.
func newFECLink(c *conn, n int) (*fecLink, error) {
	w, err := fec.NewWriter(wireOut{c}, n)
	if err != nil {
		return nil, err
	}
	lvl := strongest(n, fecHelloLevel)
	if err := w.SetLevel(lvl); err != nil {
		return nil, err
	}
	f := &fecLink{w: w, wBlock: n, txLevel: lvl, txBlock: n, rBlock: n, ch: fec.NewChooser(n)}
	f.expand = expansion(n, lvl)
	f.ch.FrameBytes = min(c.l.cfg.MaxPayload+frameOverhead, 2048)
	return f, nil
}

// expansion is what a byte costs on the line at level for codeword length n.
func expansion(n, level int) float64 {
	if level == 0 {
		return 1
	}
	return float64(n+fec.Overhead) / float64(fec.Capacity(n, level))
}

// wireOut is the transport as the writer (or its FEC stage) writes to it:
// it counts what goes on the line for the pacer and the stats.
type wireOut struct{ c *conn }

func (o wireOut) Write(p []byte) (int, error) {
	c := o.c
	n, err := c.t.Write(p)
	c.pace.sent(n)
	c.l.stats.BytesOut.Add(uint64(n))
	return n, err
}

// wireIn is the transport as the reader reads it: it counts what comes
// off the line, before the FEC stage.
type wireIn struct {
	r io.Reader
	c *conn
}

func (w wireIn) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.c.l.stats.BytesIn.Add(uint64(n))
		w.c.bytesIn.Add(uint64(n))
	}
	return n, err
}

// out is where the writer writes encoded frames: the FEC stage, or the
// transport.
func (c *conn) out() io.Writer {
	if c.fec != nil {
		return c.fec.w
	}
	return wireOut{c}
}

// flushOut sends the FEC block being filled: the writer has nothing more
// to send right now.
func (c *conn) flushOut() error {
	if c.fec == nil {
		return nil
	}
	return c.fec.w.Flush()
}

// applyFEC moves the writer to the level (and codeword length) the peer
// asked for, in the writer goroutine.
func (c *conn) applyFEC(level, block int) error {
	f := c.fec
	if f == nil {
		return nil
	}
	if block != f.wBlock {
		// The peer reads another length than ours: the blocks so far
		// end (flagged), new ones start in its length.
		if err := f.w.SetLevel(0); err != nil {
			return err
		}
		w, err := fec.NewWriter(wireOut{c}, block)
		if err != nil {
			return err
		}
		f.w, f.wBlock = w, block
	}
	if level == f.w.Level() {
		return nil
	}
	if err := f.w.SetLevel(level); err != nil {
		return err
	}
	if level == 0 {
		// A delimiter after the last block: a peer that reads no blocks
		// takes its parity for the start of a frame otherwise.
		if _, err := (wireOut{c}).Write([]byte{0}); err != nil {
			return err
		}
	}
	return nil
}

// fecReader is the reader's source with the FEC stage on it, or src as it
// is without.
func (c *conn) fecReader(src io.Reader) io.Reader {
	f := c.fec
	if f == nil {
		return src
	}
	r, err := fec.NewReader(src, f.rBlock)
	if err != nil {
		return src // rBlock was checked: not reached
	}
	st := &c.l.stats
	r.OnBlock = func(level, corrected int, ok bool) {
		st.FECBlocksIn.Add(1)
		st.FECCorrected.Add(uint64(corrected))
		if !ok {
			st.FECUncorrectable.Add(1)
		}
		f.ch.Observe(level, corrected, ok)
	}
	f.dec = r
	return r
}

// fecFrames tells the chooser of a frame that arrived (bad: damaged on
// the line, its CRC failed) and passes a change of its level on to the
// writer, which tells the peer. In the reader goroutine.
func (c *conn) fecFrames(good, bad int) {
	f := c.fec
	if f == nil {
		return
	}
	f.ch.ObserveFrames(good, bad)
	level := f.ch.Level()
	c.l.stats.FECLevelIn.Store(int64(f.dec.Stats().Level))
	rate := f.ch.SymbolErrorRate() / 8
	c.l.stats.FECErrorRateIn.Store(math.Float64bits(rate))
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	f.rxRate = rate
	if level != f.rxLevel {
		f.rxLevel = level
		if f.peer {
			f.due = true
			c.l.Notify()
		}
	}
}

// isLineDamage reports whether a frame reader's error is damage on the
// line the code could have repaired: a CRC that fails. A frame that does
// not decode as COBS is more often one the sender cut short on purpose
// (Preempter) or one a lost block ended (fec.Decoder.LossMark).
func isLineDamage(err error) bool { return errors.Is(err, errCRC) }

// fecSessionStart settles the stage when the handshake completes, under
// l.mu: with a peer that reads blocks, FEC frames flow from now on; with
// one that does not, our writer turns the code off.
func (c *conn) fecSessionStart(h *hello) {
	f := c.fec
	if f == nil {
		return
	}
	if n := fecHelloBlock(h); n > 0 {
		f.peer = true
		f.txBlock = n
		f.txLevel = strongest(n, f.txLevel)
		f.due = true
		return
	}
	f.peer = false
	f.txLevel = 0
	f.expand = 1
}

// fecFrame is the body of a FEC frame: the level our chooser wants for
// what the peer sends and the bit error rate measured on it, in
// millionths (saturating).
func (c *conn) fecFrame(scratch []byte) []byte {
	f := c.fec
	f.due = false
	ppm := min(math.Round(f.rxRate*1e6), math.MaxUint16)
	return binary.BigEndian.AppendUint16(append(scratch, frameFEC, byte(f.rxLevel)), uint16(ppm))
}

// onFECFrame applies the peer's FEC frame, under l.mu.
func (c *conn) onFECFrame(body []byte) {
	f := c.fec
	if f == nil || !f.peer || !c.complete || len(body) < 4 {
		return
	}
	level := int(body[1])
	if level > fec.MaxLevel || !fec.ValidLevel(f.txBlock, level) {
		c.l.stats.FramesBad.Add(1)
		return
	}
	c.l.stats.FECErrorRateOut.Store(math.Float64bits(float64(binary.BigEndian.Uint16(body[2:])) / 1e6))
	if level != f.txLevel {
		f.txLevel = level
		f.expand = expansion(f.txBlock, level)
		c.l.Notify()
	}
}

// fecKeepAlive makes a FEC frame due with a keepalive: a lost one is
// repaired within a KeepAlive. Under l.mu.
func (c *conn) fecKeepAlive() {
	if f := c.fec; f != nil && f.peer {
		f.due = true
	}
}

// fecWire is the line time a frame of n encoded bytes takes with the code
// as it is now (queueSample), under l.mu.
func (c *conn) fecWire(n int) int {
	if f := c.fec; f != nil && f.txLevel > 0 {
		return int(float64(n) * f.expand)
	}
	return n
}

// FECStatus is what the FEC stage of the current transport does, for
// status, metrics and test-link.
type FECStatus struct {
	Offered  bool    // this end offers FEC on the transport
	Peer     bool    // the peer reads blocks too: the code may be used
	Block    int     // the codeword length we send in
	LevelOut int     // the level we send at (0: off)
	TOut     int     // the bytes it corrects per block (0: off)
	LevelIn  int     // the level of the blocks arriving (0: off)
	TIn      int     // the bytes those correct per block
	BERIn    float64 // the bit error rate measured on what arrives
	BEROut   float64 // the bit error rate the peer measures on what we send
}

// FEC returns the FEC stage's state on the current transport.
func (l *Link) FEC() FECStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s FECStatus
	c := l.cur
	if c == nil || c.fec == nil {
		return s
	}
	f := c.fec
	s = FECStatus{Offered: true, Peer: f.peer, Block: f.txBlock, LevelOut: f.txLevel, TOut: corrects(f.txLevel)}
	s.LevelIn = int(l.stats.FECLevelIn.Load())
	s.TIn = corrects(s.LevelIn)
	s.BERIn = math.Float64frombits(l.stats.FECErrorRateIn.Load())
	s.BEROut = math.Float64frombits(l.stats.FECErrorRateOut.Load())
	return s
}

// fecLatency is how long a frame may wait in a partly filled block at
// most (the writer flushes when it runs out of frames), for queueSample.
func (c *conn) fecLatency() time.Duration {
	if f := c.fec; f != nil && f.txLevel > 0 {
		return lineTime(f.txBlock+fec.Overhead, c.l.lineRate())
	}
	return 0
}

// corrects is how many bytes a block of level corrects, 0 when off.
func corrects(level int) int {
	if level <= 0 || level > fec.MaxLevel {
		return 0
	}
	return fec.Corrects(level)
}

// fecRead is the codeword length our decoder reads (our hello's
// extFECBlock), 0 when we offer no FEC.
func (c *conn) fecRead() int {
	if c.fec == nil {
		return 0
	}
	return c.fec.rBlock
}

// fecClearHello reports whether the hello just built goes in the clear,
// outside the FEC blocks, under l.mu: every third one does, so that a
// peer that cannot read our blocks whole (it reads none and our hello
// does not fit one block, or it reads another codeword length) still
// meets us on a line that is not too noisy, while two hellos in three are
// protected where it is.
func (c *conn) fecClearHello() bool {
	return c.fec != nil && c.hellosSent%3 == 0
}
