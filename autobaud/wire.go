package autobaud

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Service is the name of the negotiation's service: the stream's
// mux.Info.Service, and the name an end with --baud auto gives in its
// link hello.
const Service = "autobaud"

// version is the protocol version a HELLO carries.
const version = 1

// Message types (docs/protocol.md, "--baud auto").
const (
	msgHello  = 0x01 // version:1 flags:1 count:1 rates:count×u32
	msgSwitch = 0x02 // seq:u32 from:u32 to:u32 delay_ms:u16
	msgReady  = 0x03 // seq:u32
	msgRefuse = 0x04 // seq:u32 reason:rest (UTF-8)
	msgAbort  = 0x05 // seq:u32
	msgProbe  = 0x06 // seq:u32 pattern:rest
	msgEcho   = 0x07 // seq:u32 pattern:rest
	msgOK     = 0x08 // seq:u32
	msgCounts = 0x09 // frames_in:u64 frames_bad:u64
)

// maxBody bounds a message's body; maxRates a HELLO's rates.
const (
	maxBody  = 1024
	maxRates = 64
)

// msg is one message of the negotiation.
type msg struct {
	typ      byte
	seq      uint32
	from, to int
	delayMS  uint16
	rates    []int
	data     []byte // a PROBE's or ECHO's pattern
	reason   string
	version  byte
	flagBits byte
	// A COUNTS message's: the sender's link counters of good and damaged
	// frames received.
	framesIn, framesBad uint64
}

// pattern is the test pattern a PROBE carries and its ECHO returns: every
// byte value, then runs of alternating bits, zeros and ones, which a UART
// at the wrong speed or a marginal line is least likely to carry intact.
var pattern = func() []byte {
	p := make([]byte, 0, 320)
	for i := range 256 {
		p = append(p, byte(i))
	}
	for i := range 32 {
		p = append(p, 0x55^byte(0xff*(i&1)))
	}
	for range 16 {
		p = append(p, 0x00)
	}
	for range 16 {
		p = append(p, 0xff)
	}
	return p
}()

var errMessage = errors.New("autobaud: malformed message")

// encode appends m's wire form: type:1 length:u16 body.
func (m msg) encode() []byte {
	var body []byte
	switch m.typ {
	case msgHello:
		body = []byte{m.version, m.flagBits, byte(len(m.rates))}
		for _, r := range m.rates {
			body = binary.BigEndian.AppendUint32(body, uint32(r))
		}
	case msgSwitch:
		body = binary.BigEndian.AppendUint32(body, m.seq)
		body = binary.BigEndian.AppendUint32(body, uint32(m.from))
		body = binary.BigEndian.AppendUint32(body, uint32(m.to))
		body = binary.BigEndian.AppendUint16(body, m.delayMS)
	case msgRefuse:
		body = binary.BigEndian.AppendUint32(body, m.seq)
		body = append(body, m.reason...)
	case msgProbe, msgEcho:
		body = binary.BigEndian.AppendUint32(body, m.seq)
		body = append(body, m.data...)
	case msgCounts:
		body = binary.BigEndian.AppendUint64(body, m.framesIn)
		body = binary.BigEndian.AppendUint64(body, m.framesBad)
	default: // READY, ABORT, OK
		body = binary.BigEndian.AppendUint32(body, m.seq)
	}
	if len(body) > maxBody {
		body = body[:maxBody]
	}
	out := []byte{m.typ, 0, 0}
	binary.BigEndian.PutUint16(out[1:], uint16(len(body)))
	return append(out, body...)
}

// readMsg reads one message. A message of an unknown type is returned
// with only its type, to be ignored; a malformed one is an error.
func readMsg(r io.Reader) (msg, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return msg{}, err
	}
	n := int(binary.BigEndian.Uint16(hdr[1:]))
	if n > maxBody {
		return msg{}, fmt.Errorf("%w: a body of %d bytes (at most %d)", errMessage, n, maxBody)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return msg{}, err
	}
	return decode(hdr[0], body)
}

// decode parses a message's body.
func decode(typ byte, body []byte) (msg, error) {
	m := msg{typ: typ}
	need := 4
	switch typ {
	case msgHello:
		need = 3
	case msgSwitch:
		need = 14
	case msgCounts:
		need = 16
	case msgReady, msgRefuse, msgAbort, msgProbe, msgEcho, msgOK:
	default:
		return m, nil
	}
	if len(body) < need {
		return m, fmt.Errorf("%w: type %#x with %d bytes", errMessage, typ, len(body))
	}
	if typ == msgCounts {
		m.framesIn, m.framesBad = binary.BigEndian.Uint64(body), binary.BigEndian.Uint64(body[8:])
		return m, nil
	}
	if typ == msgHello {
		m.version, m.flagBits = body[0], body[1]
		k := int(body[2])
		if k > maxRates || len(body) < 3+4*k {
			return m, fmt.Errorf("%w: HELLO with %d rates in %d bytes", errMessage, k, len(body))
		}
		for i := range k {
			r := binary.BigEndian.Uint32(body[3+4*i:])
			if r == 0 || r > 1<<30 {
				return m, fmt.Errorf("%w: HELLO offers rate %d", errMessage, r)
			}
			m.rates = append(m.rates, int(r))
		}
		return m, nil
	}
	m.seq = binary.BigEndian.Uint32(body)
	rest := body[4:]
	switch typ {
	case msgSwitch:
		m.from = int(binary.BigEndian.Uint32(rest))
		m.to = int(binary.BigEndian.Uint32(rest[4:]))
		m.delayMS = binary.BigEndian.Uint16(rest[8:])
		if m.to <= 0 || m.to > 1<<30 {
			return m, fmt.Errorf("%w: SWITCH to rate %d", errMessage, m.to)
		}
	case msgRefuse:
		m.reason = string(rest)
	case msgProbe, msgEcho:
		m.data = rest
	}
	return m, nil
}
