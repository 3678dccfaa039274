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

// compressor is the sending half of a session's compression: one deflate
// stream for the whole session, flushed at every frame, so that matches
// reach back into earlier frames of any stream. Only the link's writer
// uses it.
type compressor struct {
	level int // 0: every frame goes as codecBypass
	zw    *flate.Writer
	out   bytes.Buffer
}

func newCompressor(level int) *compressor {
	c := &compressor{level: level}
	if level != 0 {
		// NewWriter fails only for a level out of range.
		c.zw, _ = flate.NewWriter(&c.out, level)
	}
	return c
}

// encode compresses frame's payload in place: payload[0] is room for the
// codec byte and payload[1:] the plain bytes. It returns the payload's new
// length. A payload that would not shrink goes as it is (codecStored),
// having fed the history all the same, as it does at the receiver. With
// bypass (a frame that may reach the peer before frames numbered earlier
// but compressed later) the bytes stay out of the history.
func (c *compressor) encode(payload []byte, bypass bool) int {
	plain := payload[codecHeader:]
	if c.zw == nil || bypass {
		payload[0] = codecBypass
		return len(payload)
	}
	c.out.Reset()
	// Writes to a bytes.Buffer do not fail.
	_, _ = c.zw.Write(plain)
	_ = c.zw.Flush()
	if c.out.Len() >= len(plain) {
		payload[0] = codecStored
		return len(payload)
	}
	payload[0] = codecDeflate
	return codecHeader + copy(plain, c.out.Bytes())
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
			l.zrx = newDecompressor(l.cfg.MaxPayload)
		}
		return
	}
	l.zOn = l.offersCompression() && h.Flags&helloCompress != 0
	l.ztx, l.zrx = nil, nil
	if l.zOn {
		l.ztx = newCompressor(l.zLevel)
		l.zrx = newDecompressor(l.cfg.MaxPayload)
	}
}
