package link

import (
	"errors"
	"io"
)

// frameReader splits a byte stream into frames at 0x00 delimiters, decodes
// COBS and checks the CRC. Damaged frames and garbage are counted and
// skipped: the next good frame after them is returned.
type frameReader struct {
	r      io.Reader
	buf    []byte
	start  int
	end    int
	max    int // largest encoded frame accepted
	out    []byte
	skip   bool // discarding an over-long run until the next delimiter
	onBad  func(err error)
	onRead func(n int)
}

func newFrameReader(r io.Reader, maxFrame int, onBad func(error), onRead func(int)) *frameReader {
	max := cobsMaxEncoded(maxFrame)
	size := 64 << 10
	if size < 2*max {
		size = 2 * max
	}
	return &frameReader{r: r, buf: make([]byte, size), max: max, onBad: onBad, onRead: onRead}
}

// errTooLong marks a run of bytes without a delimiter longer than any frame.
var errTooLong = errors.New("no frame delimiter within the maximum frame length")

// next returns the body of the next frame whose CRC checks (type and body,
// CRC removed). The slice is valid until the following call.
func (fr *frameReader) next() ([]byte, error) {
	for {
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
		if fr.start > 0 && (fr.end == len(fr.buf) || fr.start == fr.end) {
			fr.end = copy(fr.buf, fr.buf[fr.start:fr.end])
			fr.start = 0
		}
		n, err := fr.r.Read(fr.buf[fr.end:])
		fr.end += n
		if n > 0 {
			fr.onRead(n)
		}
		if err != nil {
			if n > 0 {
				continue
			}
			return nil, err
		}
	}
}

// encodeFrame seals frame with its CRC and appends its COBS encoding and
// the delimiter to dst. frame must have room for the CRC at its end.
func encodeFrame(dst, frame []byte) []byte {
	frame = sealFrame(frame)
	dst = cobsEncode(dst, frame)
	return append(dst, 0)
}
