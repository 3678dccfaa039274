package link

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/flate"
)

// Compression is how a link compresses the data it sends (docs/protocol.md
// §2.6). The zero value is CompressAuto.
type Compression int

// The compression settings.
const (
	// CompressAuto picks by the transport: the strongest level on a
	// paced line (serial), where the line and not the CPU is the limit;
	// on a fast transport (TCP, pipes), where compressing would cost more
	// time than the bytes it saves, it is CompressOff.
	CompressAuto Compression = iota
	// CompressOff neither compresses nor offers to decompress: DATA
	// payloads are as they were before compression existed.
	CompressOff
	// CompressFast compresses with deflate's fastest level.
	CompressFast
	// CompressBest compresses with deflate's strongest level.
	CompressBest
)

// Compressions lists the settings in the order --compress shows them.
var Compressions = []Compression{CompressAuto, CompressOff, CompressFast, CompressBest}

func (c Compression) String() string {
	switch c {
	case CompressAuto:
		return "auto"
	case CompressOff:
		return "off"
	case CompressFast:
		return "fast"
	case CompressBest:
		return "best"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// ParseCompression reads a --compress value: auto, off, fast or best.
func ParseCompression(s string) (Compression, error) {
	for _, c := range Compressions {
		if strings.EqualFold(s, c.String()) {
			return c, nil
		}
	}
	return 0, fmt.Errorf("compression %q: want auto, off, fast or best", s)
}

// Codec bytes: the first byte of every DATA payload of a session in which
// both ends set the HELLO flag COMPRESS.
const (
	// codecStored: the plain bytes follow; they are part of the
	// direction's history (the compressor saw them and found nothing to
	// gain).
	codecStored = 0x00
	// codecDeflate: raw deflate (RFC 1951) of the plain bytes follows,
	// ending in a sync flush (an empty stored block, 00 00 FF FF); its
	// matches may reach back 32 KiB into the direction's history.
	codecDeflate = 0x01
	// codecBypass: the plain bytes follow and are not part of the
	// history (sent uncompressed by choice: a frame that may overtake
	// others, or a sender that does not compress).
	codecBypass = 0x02
)

// helloCompress is the HELLO flag of an end that reads codec bytes.
const helloCompress = 0x08

// codecHeader is the length of the codec byte.
const codecHeader = 1

// historySize is how far back deflate's matches reach.
const historySize = 32 << 10

// Line rates up to which CompressAuto takes the strongest and the
// fastest level: deflate's best level compresses text at about 15 MB/s on
// one core of a small machine and its fastest at about 60 MB/s, so below
// these rates the line, four or more times slower, stays the limit.
const (
	autoBestRate = 1 << 20  // bytes per second
	autoFastRate = 16 << 20 // bytes per second
)

// compressLevel is the deflate level for setting c on a transport with
// properties p; 0 means no compression (frames go as codecBypass).
func compressLevel(c Compression, p Properties) int {
	switch c {
	case CompressFast:
		return flate.BestSpeed
	case CompressBest:
		return flate.BestCompression
	case CompressAuto:
		switch {
		case p.LineRate <= 0:
			return 0 // fast or unknown: compression would be the bottleneck
		case p.LineRate <= autoBestRate:
			return flate.BestCompression
		case p.LineRate <= autoFastRate:
			return flate.BestSpeed
		}
	}
	return 0
}

// compressPlainMax is the most plain bytes an end that offers
// compression takes in one payload (its hello's max_payload is at least
// this plus the codec byte). A sender fills a payload with more plain
// bytes than its line's frame carries, as many as it expects to compress
// into that frame (payload.budget): deflate flushed every 16 KiB of text
// compresses about 12 % better than flushed every 1 KiB (the dynamic
// Huffman tables and the flush of each block weigh less), and the frame
// keeps its time on the line.
const compressPlainMax = 16 << 10

// Bounds of the ratio by which a compressing sender scales its frame to
// the plain bytes it asks for: the ratio it expects is the one it had
// lately, times ratioMargin (a payload that compresses worse than the
// last ones goes out longer than the line's frame), and at most
// ratioCeiling (when text gives way to random bytes, the first such
// payload is at most that many frames long). Without the margin text
// moved over the 115200 bench cable at 3.69 times the line instead of
// 3.66, but on a line with a bit error rate of 1e-4 (where the frame is
// sized for the errors) 3 % more bytes went on the line for the same
// data (TestCompressLongPayloadsOnANoisyLine's data, 8 seeds).
const (
	ratioMargin  = 0.9
	ratioCeiling = 6.0
)

// acceptMax is the largest DATA payload this end accepts, and says so in
// its hello's max_payload: the frame for the line, or with compression
// offered, at least compressPlainMax plain bytes and the codec byte.
func (l *Link) acceptMax() int {
	if l.offersCompression() {
		return max(l.cfg.MaxPayload, l.zPlain+codecHeader)
	}
	return l.cfg.MaxPayload
}

// setupCompression picks the level the link compresses with, and sizes
// what it accepts accordingly. In New.
func (l *Link) setupCompression(plain int) {
	l.zLevel = compressLevel(l.cfg.Compress, l.props)
	l.zPlain = plain
	l.receiver.rxMaxFrame = l.acceptMax()
}

// compressor is the sending half of a session's compression: one deflate
// stream for the whole session, flushed at every frame, so that matches
// reach back into earlier frames of any stream. Only the link's writer
// uses it.
type compressor struct {
	level int // 0: every frame goes as codecBypass
	zw    *flate.Writer
	out   bytes.Buffer
	plain []byte // where the upper layer puts the plain bytes of a payload
	// The plain and the sent bytes of recent payloads, each older
	// payload counting for less (ratio).
	plainSum, sentSum float64
}

func newCompressor(level int) *compressor {
	c := &compressor{level: level}
	if level != 0 {
		// NewWriter fails only for a level out of range.
		c.zw, _ = flate.NewWriter(&c.out, level)
	}
	return c
}

// compress encodes plain as one payload and returns its codec byte and
// the bytes that follow it (plain itself, or the compressor's buffer,
// valid until the next call). A payload that would not shrink goes as it
// is (codecStored), having fed the history all the same, as it does at
// the receiver. With bypass (a frame that may reach the peer before
// frames numbered earlier but compressed later) the bytes stay out of
// the history.
func (c *compressor) compress(plain []byte, bypass bool) (byte, []byte) {
	if c.zw == nil || bypass {
		return codecBypass, plain
	}
	c.out.Reset()
	// Writes to a bytes.Buffer do not fail.
	_, _ = c.zw.Write(plain)
	_ = c.zw.Flush()
	codec, body := byte(codecDeflate), c.out.Bytes()
	if len(body) >= len(plain) {
		codec, body = codecStored, plain
	}
	// Recent payloads count most: what compressed well a few frames
	// ago says little about the stream that follows, and a payload that
	// did not compress at all (random bytes after text) says the next
	// one will not either.
	if codec == codecStored {
		c.plainSum, c.sentSum = 0, 0
	}
	c.plainSum = 0.5*c.plainSum + float64(len(plain))
	c.sentSum = 0.5*c.sentSum + float64(codecHeader+len(body))
	return codec, body
}

// ratio is how many plain bytes the next payload is expected to carry
// per byte sent: the recent payloads' ratio with a margin, between 1
// and ratioCeiling.
func (c *compressor) ratio() float64 {
	if c == nil || c.zw == nil || c.sentSum == 0 {
		return 1
	}
	return max(1, min(ratioCeiling, ratioMargin*c.plainSum/c.sentSum))
}

// payload is a data payload being filled by the upper layer: room for its
// plain bytes (in the frame itself, or with compression in the
// compressor's buffer), which finish turns into the data frame.
type payload struct {
	room []byte      // for the plain bytes
	hdr  int         // the codec header, part of the payload's length on the wire
	z    *compressor // the session's compressor, nil when not compressing
	f    *outFrame   // the frame the plain bytes go to in place (not compressing)
	min  int         // the least payload room of a compressed frame's buffer
}

// newPayload prepares the next payload, under l.mu: the upper layer may
// fill up to the peer's limit, and with compression up to the plain
// bytes both ends take.
func (l *Link) newPayload() payload {
	p := payload{min: l.cfg.MaxPayload}
	if l.zOn {
		p.hdr = codecHeader
	}
	if l.zOn && l.ztx != nil && l.ztx.zw != nil {
		p.z = l.ztx
		size := min(l.peerMax, l.acceptMax()) - codecHeader
		if cap(p.z.plain) < size {
			p.z.plain = make([]byte, size)
		}
		p.room = p.z.plain[:size]
		return p
	}
	p.f = getFrame(l.cfg.MaxPayload)
	p.room = p.f.raw[dataHeader+p.hdr : dataHeader+l.payloadLimit()]
	return p
}

// budget is how many plain bytes of bulk data to ask the upper layer for
// when the payload should take wire bytes on the line (the codec byte
// included): with compression, as many as the recent ratio expects to
// compress into that.
func (p *payload) budget(wire int) int {
	n := max(0, wire-p.hdr)
	if p.z != nil {
		n = int(float64(n) * p.z.ratio())
	}
	return min(len(p.room), n)
}

// finish makes the data frame of a payload whose first n plain bytes the
// upper layer filled, compressing them (bypass: kept out of the
// history); nil when n is 0. Called with l.mu released.
func (p *payload) finish(n int, bypass bool) *outFrame {
	if n == 0 {
		if p.f != nil {
			putFrame(p.f)
		}
		return nil
	}
	f, plain := p.f, n
	if f != nil {
		if p.hdr != 0 {
			f.raw[dataHeader] = codecBypass // codec bytes, and nothing to compress with
		}
	} else {
		codec, body := p.z.compress(p.room[:n], bypass)
		f = getFrame(max(p.min, codecHeader+len(body)))
		f.raw[dataHeader] = codec
		n = copy(f.raw[dataHeader+codecHeader:], body)
	}
	f.plain = plain
	f.raw = f.raw[:dataHeader+p.hdr+n]
	return f
}

// decompressor is the receiving half: the plain bytes of the direction's
// history (the last 32 KiB of stored and deflated payloads), and a
// deflate reader started afresh from it for each frame. Only the link's
// reader uses it.
type decompressor struct {
	max  int    // the largest plain payload a frame may carry
	hist []byte // the history, in a buffer of twice historySize
	out  []byte // the plain payload of the frame decoded last
	in   bytes.Reader
	zr   io.ReadCloser
}

func newDecompressor(max int) *decompressor {
	return &decompressor{max: max, hist: make([]byte, 0, 2*historySize)}
}

// Errors of a payload that does not decompress.
var (
	errCodecEmpty   = errors.New("compressed payload without its codec byte")
	errCodecUnknown = errors.New("unknown codec byte")
	errCodecBomb    = errors.New("compressed payload inflates beyond the largest payload")
	errCodecTrail   = errors.New("compressed payload does not end in a sync flush")
)

// decode returns the plain bytes of payload (valid until the next call).
// An error means the peer sent what it could not have compressed; the
// history is then unusable and the session must end.
func (d *decompressor) decode(payload []byte) ([]byte, error) {
	if len(payload) < codecHeader {
		return nil, errCodecEmpty
	}
	body := payload[codecHeader:]
	switch payload[0] {
	case codecBypass:
		return body, nil
	case codecStored:
		if len(body) > d.max {
			return nil, errCodecBomb
		}
		d.remember(body)
		return body, nil
	case codecDeflate:
	default:
		return nil, fmt.Errorf("%w 0x%02x", errCodecUnknown, payload[0])
	}
	if !bytes.HasSuffix(body, []byte{0, 0, 0xff, 0xff}) {
		return nil, errCodecTrail
	}
	d.in.Reset(body)
	if d.zr == nil {
		d.zr = flate.NewReaderDict(&d.in, d.hist)
	} else if err := d.zr.(flate.Resetter).Reset(&d.in, d.hist); err != nil {
		return nil, fmt.Errorf("compressed payload: %w", err)
	}
	if cap(d.out) < d.max+1 {
		d.out = make([]byte, d.max+1)
	}
	out := d.out[:d.max+1]
	n := 0
	var err error
	for n < len(out) && err == nil {
		var k int
		k, err = d.zr.Read(out[n:])
		n += k
	}
	switch {
	case n > d.max:
		return nil, errCodecBomb
	case err == nil || errors.Is(err, io.EOF):
		// A final block: our peers never end the stream.
		return nil, errCodecTrail
	case !errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("compressed payload: %w", err)
	case d.in.Len() != 0:
		return nil, errCodecTrail
	}
	// The reader stopped where the next block would begin: every byte
	// of the payload was decoded.
	d.remember(out[:n])
	return out[:n], nil
}

// remember appends p to the history.
func (d *decompressor) remember(p []byte) {
	if len(p) >= historySize {
		d.hist = append(d.hist[:0], p[len(p)-historySize:]...)
		return
	}
	if len(d.hist)+len(p) > cap(d.hist) {
		keep := historySize - len(p)
		copy(d.hist, d.hist[len(d.hist)-keep:])
		d.hist = d.hist[:keep]
	}
	d.hist = append(d.hist, p...)
}

// offersCompression reports whether our hellos carry COMPRESS: unless
// compression is off, or auto on a transport where it would not compress
// (there the link runs exactly as with off, so auto can never be slower).
func (l *Link) offersCompression() bool {
	return l.cfg.Compress != CompressOff && (l.cfg.Compress != CompressAuto || l.zLevel != 0)
}

// startCompression sets up the compression contexts of a session that
// begins or goes on now with the peer's hello h, under l.mu. A resumed
// session keeps its contexts; a new one starts them fresh, with codec
// bytes when both ends offered them.
func (l *Link) startCompression(h *hello, mode sessionMode) {
	switch mode {
	case sessionResume:
		return
	case sessionAdopt:
		// The peer starts the session here, from its first frame: it
		// sent nothing that our receiving context has seen.
		if l.zOn {
			l.zrx = newDecompressor(l.acceptMax() - codecHeader)
		}
		return
	}
	l.zOn = l.offersCompression() && h.Flags&helloCompress != 0
	l.ztx, l.zrx = nil, nil
	if l.zOn {
		l.ztx = newCompressor(l.zLevel)
		l.zrx = newDecompressor(l.acceptMax() - codecHeader)
	}
}
