package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Frame types. A frame on the wire is COBS(type | body | CRC-32C) 0x00;
// docs/protocol.md specifies each body byte by byte.
const (
	frameHello = 0x1 // handshake: who we are, what we resume
	frameData  = 0x2 // seq, ack, payload for the layer above
	frameAck   = 0x3 // cumulative ack and selective-ack bitmap
	framePing  = 0x4 // keepalive / RTT probe, answered by a pong
	framePong  = 0x5 // answer to a ping, echoing its token
	frameClose = 0x6 // the session ends (the sender shuts down)
	frameAuth  = 0x7 // authentication handshake messages and refusal (auth.go)
	frameFrag  = 0x8 // a piece of a data frame resent on a noisy line
	frameFEC   = 0x9 // the FEC level the receiver wants and the error rate it measures (fec.go)
	framePiece = 0xA // which bytes of a frame arriving in fragments the receiver holds
)

// maxPieceSpans bounds the spans a PIECES frame reports; what it leaves
// out the sender sends again.
const maxPieceSpans = 8

// fragHeader is the length of a fragment's header: type, seq, ack, the
// whole payload's length, and this piece's offset in it.
const fragHeader = dataHeader + 2 + 2

// crcSize is the length of the CRC-32C trailer of every frame.
const crcSize = 4

// dataHeader is the length of a data frame's header: type, seq, ack.
const dataHeader = 1 + 2 + 2

// frameOverhead is what a data frame adds to its payload before COBS.
const frameOverhead = dataHeader + crcSize

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors a frame can fail with; the link drops such a frame and counts it.
var (
	errShortFrame = errors.New("frame too short")
	errCRC        = errors.New("CRC mismatch")
	errBadPieces  = errors.New("malformed PIECES frame")
)

// sealFrame appends the CRC-32C of frame to it.
func sealFrame(frame []byte) []byte {
	return binary.BigEndian.AppendUint32(frame, crc32.Checksum(frame, castagnoli))
}

// openFrame checks a decoded frame's CRC and returns it without the CRC.
func openFrame(frame []byte) ([]byte, error) {
	if len(frame) < 1+crcSize {
		return nil, errShortFrame
	}
	body, sum := frame[:len(frame)-crcSize], frame[len(frame)-crcSize:]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(sum) {
		return nil, errCRC
	}
	return body, nil
}

// hello is the handshake frame's content.
type hello struct {
	Version    byte
	Flags      byte
	Session    uint64 // the sender's session id, random, fixed for its process
	PeerPrev   uint64 // the peer session id the sender last had a session with
	Echo       uint64 // the peer session id seen in this handshake, 0 if none yet
	RxNext     uint16 // the next data seq the sender expects (resume point)
	MaxPayload uint32 // the largest data payload the sender accepts
	Window     uint16 // how many frames the sender buffers out of order
	Ext        []byte // extension TLVs, for forward compatibility
}

// helloMagic opens every hello body, so a peer that is not sockmux is told
// apart from one that is at once.
var helloMagic = [4]byte{'S', 'M', 'U', 'X'}

// ProtocolVersion is the link protocol version this package speaks.
//
// Version 2: an upper layer's message never continues across payloads
// (Upper.Fill), and a hello's max_payload is at least MinPayload.
const ProtocolVersion = 2

// helloLen is the length of a hello body without extensions.
const helloLen = 4 + 1 + 1 + 8 + 8 + 8 + 2 + 4 + 2

func (h *hello) marshal(dst []byte) []byte {
	dst = append(dst, frameHello)
	dst = append(dst, helloMagic[:]...)
	dst = append(dst, h.Version, h.Flags)
	dst = binary.BigEndian.AppendUint64(dst, h.Session)
	dst = binary.BigEndian.AppendUint64(dst, h.PeerPrev)
	dst = binary.BigEndian.AppendUint64(dst, h.Echo)
	dst = binary.BigEndian.AppendUint16(dst, h.RxNext)
	dst = binary.BigEndian.AppendUint32(dst, h.MaxPayload)
	dst = binary.BigEndian.AppendUint16(dst, h.Window)
	return append(dst, h.Ext...)
}

// errNotSockmux means a frame with a valid CRC that is not a sockmux hello
// arrived where a hello was due.
var errNotSockmux = errors.New("peer does not speak the sockmux link protocol")

// errPeerPayload means a hello offers less payload room than MinPayload.
var errPeerPayload = errors.New("peer's payload limit too small")

// VersionError reports a peer that speaks another protocol version.
type VersionError struct{ Peer, Ours byte }

func (e *VersionError) Error() string {
	return fmt.Sprintf("peer speaks sockmux link protocol version %d, this end speaks %d", e.Peer, e.Ours)
}

func parseHello(body []byte) (*hello, error) {
	b := body[1:]
	if len(b) < 5 || [4]byte(b[:4]) != helloMagic {
		return nil, errNotSockmux
	}
	if b[4] != ProtocolVersion {
		return nil, &VersionError{Peer: b[4], Ours: ProtocolVersion}
	}
	if len(b) < helloLen {
		return nil, errShortFrame
	}
	h := &hello{Version: b[4], Flags: b[5]}
	b = b[6:]
	h.Session = binary.BigEndian.Uint64(b)
	h.PeerPrev = binary.BigEndian.Uint64(b[8:])
	h.Echo = binary.BigEndian.Uint64(b[16:])
	h.RxNext = binary.BigEndian.Uint16(b[24:])
	h.MaxPayload = binary.BigEndian.Uint32(b[26:])
	h.Window = binary.BigEndian.Uint16(b[30:])
	h.Ext = append([]byte(nil), b[32:]...)
	if h.Session == 0 {
		return nil, fmt.Errorf("hello with session id 0")
	}
	if h.MaxPayload < MinPayload {
		return nil, fmt.Errorf("%w: the peer accepts payloads of %d bytes, fewer than the %d every sockmux link takes", errPeerPayload, h.MaxPayload, MinPayload)
	}
	return h, nil
}

// seqLess reports whether a comes before b in 16-bit serial arithmetic
// (RFC 1982); windows are far smaller than half the space.
func seqLess(a, b uint16) bool { return int16(a-b) < 0 }

// ackFrame builds an ack: the next seq expected in order, and a bitmap of
// the frames after it that arrived out of order (bit i = seq ack+1+i).
func ackFrame(dst []byte, next uint16, sack uint64) []byte {
	dst = append(dst, frameAck)
	dst = binary.BigEndian.AppendUint16(dst, next)
	if sack != 0 {
		dst = binary.BigEndian.AppendUint64(dst, sack)
	}
	return dst
}

func parseAck(body []byte) (next uint16, sack uint64, err error) {
	switch len(body) {
	case 3:
		return binary.BigEndian.Uint16(body[1:]), 0, nil
	case 11:
		return binary.BigEndian.Uint16(body[1:]), binary.BigEndian.Uint64(body[3:]), nil
	}
	return 0, 0, errShortFrame
}

// span is a run of bytes of a payload: [off, off+n).
type span struct{ off, n int }

// piecesFrame builds a PIECES frame: of frame seq, whose payload is total
// bytes long, the receiver holds the bytes of spans (at most
// maxPieceSpans, in order, none empty).
func piecesFrame(dst []byte, seq uint16, total int, spans []span) []byte {
	dst = append(dst, framePiece)
	dst = binary.BigEndian.AppendUint16(dst, seq)
	dst = binary.BigEndian.AppendUint16(dst, uint16(total))
	dst = append(dst, byte(len(spans)))
	for _, s := range spans {
		dst = binary.BigEndian.AppendUint16(dst, uint16(s.off))
		dst = binary.BigEndian.AppendUint16(dst, uint16(s.n))
	}
	return dst
}

// parsePieces reads a PIECES frame; spans must be in order, within total,
// not empty and not overlapping, at most maxPieceSpans of them.
func parsePieces(body []byte) (seq uint16, total int, spans []span, err error) {
	if len(body) < 6 {
		return 0, 0, nil, errShortFrame
	}
	seq = binary.BigEndian.Uint16(body[1:])
	total = int(binary.BigEndian.Uint16(body[3:]))
	n := int(body[5])
	if n == 0 || n > maxPieceSpans || len(body) != 6+4*n {
		return 0, 0, nil, errBadPieces
	}
	end := 0
	for i := range n {
		off := int(binary.BigEndian.Uint16(body[6+4*i:]))
		ln := int(binary.BigEndian.Uint16(body[8+4*i:]))
		if ln == 0 || off < end || off+ln > total {
			return 0, 0, nil, errBadPieces
		}
		spans = append(spans, span{off, ln})
		end = off + ln
	}
	return seq, total, spans, nil
}

func frameName(t byte) string {
	switch t {
	case frameHello:
		return "hello"
	case frameData:
		return "data"
	case frameAck:
		return "ack"
	case framePing:
		return "ping"
	case framePong:
		return "pong"
	case frameClose:
		return "close"
	case frameAuth:
		return "auth"
	case frameFrag:
		return "fragment"
	case framePiece:
		return "pieces"
	}
	return fmt.Sprintf("unknown(%d)", t)
}
