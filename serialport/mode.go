package serialport

import (
	"fmt"
	"strings"
)

// Parity settings accepted in Mode.Parity.
const (
	ParityNone  = "none"
	ParityOdd   = "odd"
	ParityEven  = "even"
	ParityMark  = "mark"
	ParitySpace = "space"
)

// Stop bit settings accepted in Mode.StopBits.
const (
	StopBitsOne        = "1"
	StopBitsOneAndHalf = "1.5"
	StopBitsTwo        = "2"
)

// Flow control settings accepted in Mode.Flow.
const (
	FlowNone   = "none"
	FlowRTSCTS = "rtscts"
)

const (
	defaultBaud = 115200
	maxBaud     = 50_000_000
	defaultData = 8
	minDataBits = 5
	maxDataBits = 8
)

// Mode is a serial line configuration: the speed and character framing, which
// must be the same at both ends of the cable, and the flow control.
//
// Empty Parity, StopBits and Flow and a zero DataBits mean the defaults of
// DefaultMode (8 data bits, no parity, 1 stop bit, no flow control); the
// string fields are matched without regard to case. Baud has no default.
type Mode struct {
	// Baud is the line speed in bits per second, e.g. 115200.
	Baud int
	// DataBits is the number of data bits per character, 5 to 8. sockmux
	// sends binary frames and needs 8.
	DataBits int
	// Parity is one of "none", "odd", "even", "mark" or "space".
	Parity string
	// StopBits is one of "1", "1.5" or "2".
	StopBits string
	// Flow is the flow control: "none", or "rtscts" for hardware flow
	// control on the RTS and CTS lines.
	Flow string
}

// DefaultMode returns 115200 baud, 8 data bits, no parity, 1 stop bit and no
// flow control ("115200 8N1").
func DefaultMode() Mode {
	return Mode{Baud: defaultBaud, DataBits: defaultData, Parity: ParityNone, StopBits: StopBitsOne, Flow: FlowNone}
}

// normalized returns m with defaults filled in and the string fields in
// lower case.
func (m Mode) normalized() Mode {
	if m.DataBits == 0 {
		m.DataBits = defaultData
	}
	m.Parity = strings.ToLower(strings.TrimSpace(m.Parity))
	if m.Parity == "" {
		m.Parity = ParityNone
	}
	m.StopBits = strings.TrimSpace(m.StopBits)
	if m.StopBits == "" {
		m.StopBits = StopBitsOne
	}
	m.Flow = strings.ToLower(strings.TrimSpace(m.Flow))
	if m.Flow == "" {
		m.Flow = FlowNone
	}
	return m
}

// Validate reports the first invalid field of m with an error that names the
// field, the bad value and the accepted values.
func (m Mode) Validate() error {
	n := m.normalized()
	switch {
	case m.Baud <= 0:
		return fmt.Errorf("invalid baud rate %d: must be a positive number of bits per second, e.g. 115200", m.Baud)
	case m.Baud > maxBaud:
		return fmt.Errorf("invalid baud rate %d: above %d", m.Baud, maxBaud)
	case n.DataBits < minDataBits || n.DataBits > maxDataBits:
		return fmt.Errorf("invalid data bits %d: must be 5, 6, 7 or 8", m.DataBits)
	}
	switch n.Parity {
	case ParityNone, ParityOdd, ParityEven, ParityMark, ParitySpace:
	default:
		return fmt.Errorf("invalid parity %q: must be none, odd, even, mark or space", m.Parity)
	}
	switch n.StopBits {
	case StopBitsOne, StopBitsOneAndHalf, StopBitsTwo:
	default:
		return fmt.Errorf("invalid stop bits %q: must be 1, 1.5 or 2", m.StopBits)
	}
	switch n.Flow {
	case FlowNone, FlowRTSCTS:
	default:
		return fmt.Errorf("invalid flow control %q: must be none or rtscts", m.Flow)
	}
	return nil
}

// BitsPerByte is the number of bit times one byte occupies on the line: one
// start bit, the data bits, one parity bit unless parity is none, and the
// stop bits. It is 10 for 8N1, 11 for 8E1 and 10.5 for 8N1.5: 1.5 stop bits
// count as the exact fraction, not rounded up. The result is meaningful only
// for a mode that passes Validate.
func (m Mode) BitsPerByte() float64 {
	n := m.normalized()
	bits := 1 + float64(n.DataBits)
	if n.Parity != ParityNone {
		bits++
	}
	switch n.StopBits {
	case StopBitsOneAndHalf:
		bits += 1.5
	case StopBitsTwo:
		bits += 2
	default:
		bits++
	}
	return bits
}

// BytesPerSecond is the line's capacity in bytes per second, Baud divided by
// BitsPerByte and rounded down: 11520 for 115200 8N1. It is 0 for a mode
// whose Baud is not positive.
func (m Mode) BytesPerSecond() int {
	if m.Baud <= 0 {
		return 0
	}
	return int(float64(m.Baud) / m.BitsPerByte())
}

// String formats m the way terminal programs do, e.g. "115200 8N1",
// "9600 7E2" or "115200 8N1 rtscts".
func (m Mode) String() string {
	n := m.normalized()
	p := "?"
	switch n.Parity {
	case ParityNone:
		p = "N"
	case ParityOdd:
		p = "O"
	case ParityEven:
		p = "E"
	case ParityMark:
		p = "M"
	case ParitySpace:
		p = "S"
	}
	s := fmt.Sprintf("%d %d%s%s", m.Baud, n.DataBits, p, n.StopBits)
	if n.Flow != FlowNone {
		s += " " + n.Flow
	}
	return s
}
