package link

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// frameReader splits a byte stream into frames at 0x00 delimiters, decodes
// COBS and checks the CRC. Damaged frames and garbage are counted and
// skipped: the next good frame after them is returned.
type frameReader struct {
	r      io.Reader
	buf    []byte // grows up to size as frames need it
	size   int    // the most buf grows to
	start  int
	end    int
	max    int // largest encoded frame accepted
	out    []byte
	skip   bool // discarding an over-long run until the next delimiter
	raw    bool // a 0x00 where a frame starts opens a length-prefixed frame
	onBad  func(err error)
	onRead func(n int)
}

func newFrameReader(r io.Reader, maxFrame int, onBad func(error), onRead func(int)) *frameReader {
	max := cobsMaxEncoded(maxFrame)
	size := 64 << 10
	if size < 2*max {
		size = 2 * max
	}
	// The buffer starts small and grows when a frame needs it: an idle
	// link (keepalives only) holds a few KiB, which counts on a hub of a
	// thousand peers.
	return &frameReader{r: r, buf: make([]byte, min(size, initialReadBuffer)), size: size, max: max, onBad: onBad, onRead: onRead}
}

// initialReadBuffer is a frame reader's buffer until a frame needs more.
const initialReadBuffer = 4 << 10

// errTooLong marks a run of bytes without a delimiter longer than any frame.
var errTooLong = errors.New("no frame delimiter within the maximum frame length")

// next returns the body of the next frame whose CRC checks (type and body,
// CRC removed). The slice is valid until the following call.
func (fr *frameReader) next() ([]byte, error) {
	for {
		if fr.raw && !fr.skip && fr.start < fr.end && fr.buf[fr.start] == 0 {
			if fr.end-fr.start < rawHeader {
				// Perhaps the start of a length-prefixed frame: read on.
				if err := fr.more(rawHeader); err != nil {
					return nil, err
				}
				continue
			}
			n := int(binary.BigEndian.Uint32(fr.buf[fr.start+1:]))
			switch {
			case n < 1+crcSize || n > fr.max:
				fr.onBad(errRawLength)
				fr.start++ // resynchronise on the delimiters that follow
				continue
			case fr.end-fr.start >= rawHeader+n:
				frame := fr.buf[fr.start+rawHeader : fr.start+rawHeader+n]
				fr.start += rawHeader + n
				body, err := openFrame(frame)
				if err != nil {
					fr.onBad(err)
					continue
				}
				return body, nil
			}
			if err := fr.more(rawHeader + n); err != nil {
				return nil, err
			}
			continue
		}
		if i := indexZero(fr.buf[fr.start:fr.end]); i >= 0 {
			enc := fr.buf[fr.start : fr.start+i]
			fr.start += i + 1
			if fr.skip {
				fr.skip = false
				continue
			}
			if len(enc) == 0 {
				continue // idle delimiter
			}
			if len(enc) > fr.max {
				// Too long for any frame we accept, even though its
				// delimiter came in the same read.
				fr.onBad(errTooLong)
				continue
			}
			var err error
			fr.out, err = cobsDecode(fr.out[:0], enc)
			if err == nil {
				var body []byte
				if body, err = openFrame(fr.out); err == nil {
					return body, nil
				}
			}
			fr.onBad(err)
			continue
		}
		if fr.end-fr.start > fr.max {
			if !fr.skip {
				fr.onBad(errTooLong)
			}
			fr.skip = true
			fr.start, fr.end = 0, 0
		}
		if err := fr.more(fr.end - fr.start + 1); err != nil {
			return nil, err
		}
	}
}

// more reads on, first moving what is buffered to the front when the
// buffer could not otherwise hold need bytes from fr.start (or holds
// nothing).
func (fr *frameReader) more(need int) error {
	if fr.start > 0 && (fr.start+need > len(fr.buf) || fr.start == fr.end) {
		fr.end = copy(fr.buf, fr.buf[fr.start:fr.end])
		fr.start = 0
	}
	if fr.start+need > len(fr.buf) && len(fr.buf) < fr.size {
		grown := make([]byte, min(fr.size, max(2*len(fr.buf), fr.start+need)))
		copy(grown, fr.buf[:fr.end])
		fr.buf = grown
	}
	return fr.fill()
}

// fill reads more bytes into the buffer, which has room. An error comes
// back only when no byte came with it.
func (fr *frameReader) fill() error {
	n, err := fr.r.Read(fr.buf[fr.end:])
	fr.end += n
	if n > 0 && fr.onRead != nil {
		fr.onRead(n)
		return nil
	}
	if err == nil {
		return nil
	}
	return err
}

// rawHeader is a length-prefixed frame's header: 0x00 and a 32-bit length.
const rawHeader = 5

// errRawLength marks a length-prefixed frame whose length no frame has.
var errRawLength = errors.New("length-prefixed frame with an impossible length")

// encodeRaw appends frame to dst as a length-prefixed frame: 0x00, its
// 32-bit length and the frame with its CRC, the framing both ends use on
// a reliable transport once their hellos said so (docs/protocol.md,
// section 1).
func encodeRaw(dst, frame []byte) []byte {
	start := len(dst)
	return sealRaw(append(append(dst, 0, 0, 0, 0, 0), frame...), start)
}

// sealRaw completes the length-prefixed frame at out[start:], header room
// followed by the frame: it appends the frame's CRC and fills in the
// header.
func sealRaw(out []byte, start int) []byte {
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(out[start+rawHeader:], castagnoli))
	out[start] = 0
	binary.BigEndian.PutUint32(out[start+1:], uint32(len(out)-start-rawHeader))
	return out
}

// encodeFrame seals frame with its CRC and appends its COBS encoding and
// the delimiter to dst. frame must have room for the CRC at its end.
func encodeFrame(dst, frame []byte) []byte {
	frame = sealFrame(frame)
	dst = cobsEncode(dst, frame)
	return append(dst, 0)
}
