package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"
)

// Fuzz targets for what the link reads off the wire. Their seeds (f.Add
// and testdata/fuzz) run in every `go test`; `make fuzz` runs each one for
// FUZZTIME.

// fuzzMaxFrame is the largest frame (before COBS) the fuzzed frame reader
// accepts: small, so that over-long runs are easy to hit.
const fuzzMaxFrame = 100

// chunkReader returns the stream in reads whose sizes cycle through sizes
// (each 1..256), the way a transport hands over whatever has arrived.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.sizes) > 0 {
		n = int(r.sizes[r.i%len(r.sizes)]) + 1
		r.i++
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// referenceFrames is the framing rule of docs/protocol.md section 1 applied
// to a whole stream at once: split at 0x00, drop runs longer than maxEnc,
// COBS-decode, check the CRC. It returns the frame bodies and how many runs
// were dropped (a trailing run without a delimiter counts only once it is
// already too long).
func referenceFrames(stream []byte, maxEnc int) (frames [][]byte, bad int) {
	segs := bytes.Split(stream, []byte{0})
	last := segs[len(segs)-1]
	for _, seg := range segs[:len(segs)-1] {
		switch {
		case len(seg) == 0:
		case len(seg) > maxEnc:
			bad++
		default:
			dec, err := cobsDecode(nil, seg)
			if err == nil {
				var body []byte
				if body, err = openFrame(dec); err == nil {
					frames = append(frames, body)
					continue
				}
			}
			bad++
		}
	}
	if len(last) > maxEnc {
		bad++
	}
	return frames, bad
}

// FuzzFrameReader feeds arbitrary byte streams, cut into arbitrary reads,
// to the frame decoder. Whatever the stream and however it is cut, the
// reader must return exactly the frames the reference rule finds, each
// with a valid CRC, and never hold more than its buffer.
func FuzzFrameReader(f *testing.F) {
	good := func(body ...byte) []byte { return encodeFrame(nil, body) }
	data := func(seq uint16, payload string) []byte {
		b := binary.BigEndian.AppendUint16([]byte{frameData}, seq)
		b = binary.BigEndian.AppendUint16(b, 0)
		return good(append(b, payload...)...)
	}
	h := hello{Version: ProtocolVersion, Session: 7, MaxPayload: 1024, Window: 16}
	f.Add(data(0, "hello"), []byte{})
	f.Add(append(append([]byte{0}, h.marshal(nil)...), 0), []byte{3})
	f.Add(good(h.marshal(nil)...), []byte{0, 1, 2})
	f.Add(append(data(1, "one"), data(2, "two")...), []byte{4, 250})
	flipped := data(3, "flipped")
	flipped[4] ^= 0x40
	f.Add(append(flipped, data(4, "after")...), []byte{1})
	long := bytes.Repeat([]byte{0x55}, 3*fuzzMaxFrame)
	f.Add(append(append(long, 0), data(5, "resync")...), []byte{7})
	f.Add(append(long, data(5, "glued")...), []byte{})
	f.Add(bytes.Repeat([]byte{0}, 10), []byte{})
	f.Add(good(bytes.Repeat([]byte{1}, fuzzMaxFrame)...), []byte{})
	f.Add(good(ackFrame(nil, 9, 1<<63)...), []byte{255})

	f.Fuzz(func(t *testing.T, stream, sizes []byte) {
		checkFrameReader(t, stream, sizes, false)
	})
}

// FuzzCOBS checks the byte stuffing: any frame encodes without a zero,
// within the advertised bound, and decodes back to itself; and decoding
// arbitrary bytes never yields more bytes than it read (the frame reader
// only ever decodes runs without zeros; other bytes must not panic).
func FuzzCOBS(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{0, 0, 0})
	f.Add(bytes.Repeat([]byte{1}, 254))
	f.Add(bytes.Repeat([]byte{1}, 255))
	f.Add(append(bytes.Repeat([]byte{2}, 254), 0))
	f.Add(append(bytes.Repeat([]byte{3}, 508), 0, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		enc := cobsEncode(nil, b)
		if bytes.IndexByte(enc, 0) >= 0 {
			t.Fatalf("encoding of %x contains a zero: %x", b, enc)
		}
		if len(enc) > cobsMaxEncoded(len(b)) {
			t.Fatalf("encoding of %d bytes is %d long, bound %d", len(b), len(enc), cobsMaxEncoded(len(b)))
		}
		dec, err := cobsDecode(nil, enc)
		if err != nil || !bytes.Equal(dec, b) {
			t.Fatalf("round trip of %x: %x, %v", b, dec, err)
		}
		if dec, err := cobsDecode(nil, b); err == nil && len(dec) > len(b) {
			t.Fatalf("decoding %d bytes gave %d", len(b), len(dec))
		}
	})
}

// FuzzParseHello checks the handshake frame's parser: a hello it accepts
// has a session id and our version and marshals back to exactly the bytes
// it came from; anything else is refused with one of the known errors.
func FuzzParseHello(f *testing.F) {
	h := hello{Version: ProtocolVersion, Flags: helloDone, Session: 1 << 60, PeerPrev: 2, Echo: 3, RxNext: 4, MaxPayload: 32 << 10, Window: 128}
	f.Add(h.marshal(nil)[1:])
	h.Ext = []byte{9, 2, 'h', 'i'}
	f.Add(h.marshal(nil)[1:])
	h.Session = 0
	f.Add(h.marshal(nil)[1:])
	f.Add([]byte("SMUX\x02"))
	f.Add([]byte("SSH-2.0-OpenSSH"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, rest []byte) {
		body := append([]byte{frameHello}, rest...)
		h, err := parseHello(body)
		if err != nil {
			var ve *VersionError
			if !errors.Is(err, errNotSockmux) && !errors.As(err, &ve) && !errors.Is(err, errShortFrame) && err.Error() != "hello with session id 0" {
				t.Fatalf("unexpected error %v", err)
			}
			if h != nil {
				t.Fatal("a hello returned with an error")
			}
			return
		}
		if h.Session == 0 || h.Version != ProtocolVersion {
			t.Fatalf("accepted hello with session %x version %d", h.Session, h.Version)
		}
		if again := h.marshal(nil); !bytes.Equal(again, body) {
			t.Fatalf("hello %x marshals back as %x", body, again)
		}
	})
}

// FuzzParseAck checks the ack parser: an ack it accepts is 3 or 11 bytes
// and builds back to the same bytes.
func FuzzParseAck(f *testing.F) {
	f.Add(ackFrame(nil, 0, 0)[1:])
	f.Add(ackFrame(nil, 0xFFFF, 1)[1:])
	f.Add(ackFrame(nil, 7, 1<<63|5)[1:])
	f.Add([]byte{1, 2, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, rest []byte) {
		body := append([]byte{frameAck}, rest...)
		next, sack, err := parseAck(body)
		if err != nil {
			if !errors.Is(err, errShortFrame) || len(body) == 3 || len(body) == 11 {
				t.Fatalf("ack of %d bytes refused: %v", len(body), err)
			}
			return
		}
		if len(body) != 3 && len(body) != 11 {
			t.Fatalf("ack of %d bytes accepted", len(body))
		}
		again := ackFrame(nil, next, sack)
		if sack == 0 && len(body) == 11 {
			again = binary.BigEndian.AppendUint64(again, 0) // an all-zero bitmap is optional
		}
		if !bytes.Equal(again, body) {
			t.Fatalf("ack %x builds back as %x", body, again)
		}
	})
}

// referenceRawFrames is the framing rule for a reader that also accepts
// length-prefixed frames (docs/protocol.md section 1): where a frame
// starts, 0x00 and a 32-bit length open one; a length no frame has counts
// as damage and the reader moves one byte on; anything else is COBS up to
// the next 0x00, as in referenceFrames.
func referenceRawFrames(stream []byte, maxEnc int) (frames [][]byte, bad int) {
	for len(stream) > 0 {
		if stream[0] == 0 {
			if len(stream) < rawHeader {
				return frames, bad
			}
			n := int(binary.BigEndian.Uint32(stream[1:]))
			if n < 1+crcSize || n > maxEnc {
				bad++
				stream = stream[1:]
				continue
			}
			if len(stream) < rawHeader+n {
				return frames, bad
			}
			if body, err := openFrame(stream[rawHeader : rawHeader+n]); err == nil {
				frames = append(frames, body)
			} else {
				bad++
			}
			stream = stream[rawHeader+n:]
			continue
		}
		i := bytes.IndexByte(stream, 0)
		if i < 0 {
			if len(stream) > maxEnc {
				bad++
			}
			return frames, bad
		}
		f, b := referenceFrames(stream[:i+1], maxEnc)
		frames, bad = append(frames, f...), bad+b
		stream = stream[i+1:]
	}
	return frames, bad
}

// FuzzRawFrameReader is FuzzFrameReader for a reader on a reliable
// transport, where length-prefixed frames and COBS frames mix.
func FuzzRawFrameReader(f *testing.F) {
	raw := func(body ...byte) []byte { return encodeRaw(nil, body) }
	data := func(seq uint16, payload string) []byte {
		b := binary.BigEndian.AppendUint16([]byte{frameData}, seq)
		b = binary.BigEndian.AppendUint16(b, 0)
		return append(b, payload...)
	}
	h := hello{Version: ProtocolVersion, Session: 7, MaxPayload: 1024, Window: 16, Flags: helloRaw}
	f.Add(append(encodeFrame(nil, h.marshal(nil)), raw(data(0, "hello")...)...), []byte{})
	f.Add(append(raw(data(1, "one")...), raw(data(2, "two")...)...), []byte{0, 3, 250})
	flipped := raw(data(3, "flipped")...)
	flipped[9] ^= 0x40
	f.Add(append(flipped, raw(data(4, "after")...)...), []byte{1})
	huge := raw(data(5, "huge")...)
	huge[1] = 0x7f
	f.Add(append(huge, encodeFrame(nil, data(6, "cobs after"))...), []byte{2})
	f.Add(raw(bytes.Repeat([]byte{1}, fuzzMaxFrame)...)[:40], []byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0}, []byte{})

	f.Fuzz(func(t *testing.T, stream, sizes []byte) {
		checkFrameReader(t, stream, sizes, true)
	})
}

// checkFrameReader feeds stream, cut into reads by sizes, to a frame
// reader (raw: one that also accepts length-prefixed frames). The reader
// must return exactly the frames, and drop exactly as many runs, as the
// reference rule finds; never return an empty body; never hold more than
// its buffer; and, reading COBS frames only, never decode more than the
// longest frame and check each body's real CRC.
func checkFrameReader(t *testing.T, stream, sizes []byte, raw bool) {
	t.Helper()
	maxEnc := cobsMaxEncoded(fuzzMaxFrame)
	reference := referenceFrames
	if raw {
		reference = referenceRawFrames
	}
	wantFrames, wantBad := reference(stream, maxEnc)
	var bad int
	fr := newFrameReader(&chunkReader{data: stream, sizes: sizes}, fuzzMaxFrame, func(error) { bad++ }, func(int) {})
	fr.raw = raw
	var got [][]byte
	for {
		body, err := fr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("unexpected error %v", err)
			}
			break
		}
		if len(body) == 0 {
			t.Fatal("empty frame body returned")
		}
		if fr.end-fr.start > len(fr.buf) {
			t.Fatalf("reader holds %d bytes: beyond its buffer", fr.end-fr.start)
		}
		if !raw {
			if len(fr.out) > maxEnc {
				t.Fatalf("reader decoded %d bytes: beyond the longest frame", len(fr.out))
			}
			// The CRC the reader checked is really the body's.
			sealed := fr.out[:len(body)+crcSize]
			if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(sealed[len(body):]) {
				t.Fatalf("frame %x returned with a bad CRC", body)
			}
		}
		got = append(got, append([]byte(nil), body...))
	}
	if len(got) != len(wantFrames) {
		t.Fatalf("reader returned %d frames, the framing rule finds %d", len(got), len(wantFrames))
	}
	for i := range got {
		if !bytes.Equal(got[i], wantFrames[i]) {
			t.Fatalf("frame %d: reader %x, rule %x", i, got[i], wantFrames[i])
		}
	}
	if bad != wantBad {
		t.Fatalf("reader dropped %d runs, the framing rule %d", bad, wantBad)
	}
}

// FuzzParsePieces checks the PIECES frame: whatever parses builds back to
// the same bytes, and its spans are in order, inside the payload, not
// empty, at most maxPieceSpans.
func FuzzParsePieces(f *testing.F) {
	f.Add(piecesFrame(nil, 7, 100, []span{{0, 30}, {50, 10}})[1:])
	f.Add(piecesFrame(nil, 0xFFFF, 0xFFFF, []span{{0xFFFE, 1}})[1:])
	f.Add([]byte{0, 1, 0, 10, 1, 0, 9, 0, 2})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, rest []byte) {
		body := append([]byte{framePiece}, rest...)
		seq, total, spans, err := parsePieces(body)
		if err != nil {
			return
		}
		end := 0
		for _, s := range spans {
			if s.n <= 0 || s.off < end || s.off+s.n > total {
				t.Fatalf("span %+v of %d bytes after %d accepted", s, total, end)
			}
			end = s.off + s.n
		}
		if len(spans) == 0 || len(spans) > maxPieceSpans {
			t.Fatalf("%d spans accepted", len(spans))
		}
		if again := piecesFrame(nil, seq, total, spans); !bytes.Equal(again, body) {
			t.Fatalf("pieces %x build back as %x", body, again)
		}
	})
}
