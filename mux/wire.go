package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Message types. Each of the link's payloads holds whole messages, one
// after another (none continues in the next payload; bounds.go). Each starts
// with its type and a stream id (unsigned varint); docs/protocol.md has
// the layout of each.
const (
	msgOpen         = 0x01 // sid, len, TLVs: open a stream
	msgAccept       = 0x02 // sid: the far end reached the destination
	msgData         = 0x03 // sid, len, bytes
	msgWindow       = 0x04 // sid, increment: more credit for the sender
	msgFin          = 0x05 // sid: the sender will send no more data
	msgReset        = 0x06 // sid, code, len, reason: the stream is dead
	msgListen       = 0x07 // 0, len, TLVs: please listen for me (-R)
	msgListenResult = 0x08 // 0, len, TLVs: how that went
)

// TLV tags of OPEN, LISTEN and LISTEN_RESULT bodies. Unknown tags are
// skipped, so later versions can add fields.
const (
	tagNetwork  = 1  // "tcp" or "udp"
	tagDest     = 2  // requested destination "host:port" (may be empty)
	tagEntrance = 3  // uvarint: port the connection entered on, opener's side
	tagClient   = 4  // "ip:port" of the client that connected
	tagTag      = 5  // uvarint: listener tag, for -R and routing
	tagBind     = 6  // LISTEN: bind address "host:port"
	tagError    = 7  // LISTEN_RESULT: error text, absent on success
	tagProto    = 8  // a protocol hint, e.g. "socks" for routing rules
	tagClose    = 9  // LISTEN, LISTEN_RESULT: uvarint 1: close the listener of this tag instead
	tagService  = 10 // OPEN: a service of the far end's, instead of a destination
)

// InitialWindow is the credit each direction of a new stream starts
// with, before any WINDOW message: a sender may send this much at once.
const InitialWindow = 64 << 10

// maxMessage bounds a control message's body; data is bounded by credit.
const maxMessage = 4096

// errProtocol wraps every violation of the mux protocol by the peer.
var errProtocol = errors.New("mux protocol error")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, args...))
}

// tlv appends a tag-length-value field.
func tlv(dst []byte, tag byte, val []byte) []byte {
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(val)))
	return append(dst, val...)
}

func tlvString(dst []byte, tag byte, s string) []byte {
	if s == "" {
		return dst
	}
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func tlvUint(dst []byte, tag byte, v uint64) []byte {
	return tlv(dst, tag, binary.AppendUvarint(nil, v))
}

// parseTLV calls f for each field of body.
func parseTLV(body []byte, f func(tag byte, val []byte) error) error {
	for len(body) > 0 {
		tag := body[0]
		n, k := binary.Uvarint(body[1:])
		if k <= 0 || n > uint64(len(body)-1-k) {
			return protoErr("bad TLV length")
		}
		val := body[1+k : 1+k+int(n)]
		if err := f(tag, val); err != nil {
			return err
		}
		body = body[1+k+int(n):]
	}
	return nil
}

func tlvUvarint(val []byte) (uint64, error) {
	v, k := binary.Uvarint(val)
	if k <= 0 || k != len(val) {
		return 0, protoErr("bad varint field")
	}
	return v, nil
}

// message is one parsed message; body aliases the input.
type message struct {
	typ  byte
	sid  uint32
	n    uint64 // window increment, or reset code
	body []byte // data, TLVs, or reset reason
}

// errShort means the buffer holds only the beginning of a message.
var errShort = errors.New("short message")

// errOversize is a DATA message longer than any credit allows (maxData):
// parseMessage returns its header, with the body's length in n, and the
// header's length; the body is to be skipped.
var errOversize = errors.New("data beyond any credit")

// parseMessage parses the message at the start of b and returns it with
// its length. errShort means more bytes are needed. For a DATA message
// longer than maxData it returns errOversize as soon as the length is read.
func parseMessage(b []byte, maxData int) (message, int, error) {
	var m message
	if len(b) == 0 {
		return m, 0, errShort
	}
	m.typ = b[0]
	off := 1
	sid, k := binary.Uvarint(b[off:])
	if k == 0 {
		return m, 0, errShort
	}
	if k < 0 || sid > 0xFFFFFFFF {
		return m, 0, protoErr("bad stream id")
	}
	m.sid = uint32(sid)
	off += k
	switch m.typ {
	case msgAccept, msgFin:
		return m, off, nil
	case msgWindow:
		v, k := binary.Uvarint(b[off:])
		if k == 0 {
			return m, 0, errShort
		}
		if k < 0 || v == 0 || v > 1<<31 {
			return m, 0, protoErr("bad window increment")
		}
		m.n = v
		return m, off + k, nil
	case msgReset:
		if len(b) <= off {
			return m, 0, errShort
		}
		m.n = uint64(b[off])
		off++
		fallthrough
	case msgOpen, msgData, msgListen, msgListenResult:
		n, k := binary.Uvarint(b[off:])
		if k == 0 {
			return m, 0, errShort
		}
		if k < 0 || (m.typ != msgData && n > maxMessage) || n > 1<<24 {
			return m, 0, protoErr("bad length %d in message type %d", n, m.typ)
		}
		off += k
		if m.typ == msgData && n > uint64(maxData) {
			m.n = n
			return m, off, errOversize
		}
		if uint64(len(b)-off) < n {
			return m, 0, errShort
		}
		m.body = b[off : off+int(n)]
		return m, off + int(n), nil
	}
	return m, 0, protoErr("unknown message type %d", m.typ)
}

// header appends a message's type and stream id.
func header(dst []byte, typ byte, sid uint32) []byte {
	return binary.AppendUvarint(append(dst, typ), uint64(sid))
}

// withBody appends a length-prefixed body.
func withBody(dst, body []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	return append(dst, body...)
}

// uvarintLen is the encoded length of v.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
