package link

import (
	"bytes"
	"errors"
)

// Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999): a frame's
// bytes are rewritten so that 0x00 never occurs inside it, and 0x00 then
// delimits frames on the wire. After garbage or lost bytes the receiver
// simply waits for the next 0x00 and is in step again. The cost is one
// byte in 254 plus the delimiter.

// errCOBS reports a block that is cut short or a zero inside a frame.
var errCOBS = errors.New("malformed COBS block")

// cobsMaxEncoded is the largest encoding of an n-byte frame, without the
// delimiter.
func cobsMaxEncoded(n int) int { return n + n/254 + 1 }

// cobsEncode appends the COBS encoding of src to dst (no delimiter).
func cobsEncode(dst, src []byte) []byte {
	for {
		// One block: up to 254 non-zero bytes, led by a code byte of
		// their count + 1; a code below 0xFF also stands for a zero.
		run := src
		if len(run) > 254 {
			run = run[:254]
		}
		z := bytes.IndexByte(run, 0)
		if z >= 0 {
			dst = append(dst, byte(z+1))
			dst = append(dst, src[:z]...)
			src = src[z+1:]
			continue
		}
		dst = append(dst, byte(len(run)+1))
		dst = append(dst, run...)
		src = src[len(run):]
		if len(run) < 254 {
			return dst
		}
		if len(src) == 0 {
			// A full block at the end stands for no zero; the decoder
			// needs nothing more.
			return dst
		}
	}
}

// cobsDecode appends the decoding of one encoded frame (without its
// delimiter) to dst.
func cobsDecode(dst, src []byte) ([]byte, error) {
	for len(src) > 0 {
		code := int(src[0])
		if code == 0 {
			return dst, errCOBS
		}
		if code > len(src) {
			return dst, errCOBS // block cut short
		}
		dst = append(dst, src[1:code]...)
		src = src[code:]
		if code < 0xFF && len(src) > 0 {
			dst = append(dst, 0)
		}
	}
	return dst, nil
}

// indexZero returns the index of the first 0x00 in b, or -1.
func indexZero(b []byte) int { return bytes.IndexByte(b, 0) }
