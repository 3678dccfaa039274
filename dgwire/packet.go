package dgwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Packet types of DeleGate's SockMux 0.3 (src/sox.c). An acknowledgement
// is its request's type with Ack set, sent with the agent ids swapped.
const (
	TypeNOOP    byte = 0x00
	TypeHELLO   byte = 0x01
	TypeCONNECT byte = 0x02
	TypeSEND    byte = 0x06
	TypeSENDOOB byte = 0x07
	TypeCLOSE   byte = 0x08
	TypeECHO    byte = 0x09
	TypeSETOPT  byte = 0x0A
	TypeCRYPTON byte = 0x0C

	Ack byte = 0x40

	TypeHELLOOK   = TypeHELLO | Ack
	TypeCONNECTED = TypeCONNECT | Ack
	TypeSENT      = TypeSEND | Ack
	TypeSENTOOB   = TypeSENDOOB | Ack
	TypeCLOSED    = TypeCLOSE | Ack
	TypeECHOED    = TypeECHO | Ack
)

// SETOPT options: the first byte of a SETOPT payload.
const (
	OptCRYPT    byte = 0x01
	OptCONNDATA byte = 0x02
	OptPACKSIZE byte = 0x03
	OptAUTH     byte = 0x04
)

const (
	// Version is the first byte of every packet: SockMux 0.3.
	Version byte = 0x03
	// VersionCrypt is the first byte of a packet encrypted with Credhy.
	VersionCrypt byte = 0x83
	// HeaderLen is the length of a packet's header.
	HeaderLen = 8
	// PackSize is DeleGate's default PACKSIZE: the longest packet,
	// header included.
	PackSize = 16384
	// NoAgent is the agent id that names no agent (PK_clrSaid).
	NoAgent uint16 = 0x00FF
	// BufSize is the number DeleGate puts first in CONNECT and CONNECTED.
	BufSize = 98304
)

// Texts of CLOSE and CLOSED, as DeleGate sends them.
const (
	closeText  = "DO close"
	closedText = "OK closed"
)

// Packet is one SockMux packet.
type Packet struct {
	Ver  byte
	Type byte
	Said uint16 // the sender's agent id
	Raid uint16 // the receiver's agent id
	Data []byte
}

// TypeName names a packet type for logs.
func TypeName(t byte) string {
	switch t {
	case TypeNOOP:
		return "NOOP"
	case TypeHELLO:
		return "HELLO"
	case TypeHELLOOK:
		return "HELLOOK"
	case TypeCONNECT:
		return "CONNECT"
	case TypeCONNECTED:
		return "CONNECTED"
	case TypeSEND:
		return "SEND"
	case TypeSENT:
		return "SENT"
	case TypeSENDOOB:
		return "SENDOOB"
	case TypeSENTOOB:
		return "SENTOOB"
	case TypeCLOSE:
		return "CLOSE"
	case TypeCLOSED:
		return "CLOSED"
	case TypeECHO:
		return "ECHO"
	case TypeECHOED:
		return "ECHO-ACK"
	case TypeSETOPT:
		return "SETOPT"
	case TypeCRYPTON:
		return "CRYPTON"
	}
	return fmt.Sprintf("type 0x%02x", t)
}

// known reports whether t is a packet type of SockMux 0.3.
func known(t byte) bool {
	return !strings.HasPrefix(TypeName(t), "type ")
}

// Append appends p's encoding to dst. The caller keeps len(p.Data) within
// the peer's PACKSIZE.
func (p Packet) Append(dst []byte) []byte {
	ver := p.Ver
	if ver == 0 {
		ver = Version
	}
	dst = append(dst, ver, p.Type)
	dst = binary.BigEndian.AppendUint16(dst, p.Said)
	dst = binary.BigEndian.AppendUint16(dst, p.Raid)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(p.Data)))
	return append(dst, p.Data...)
}

// Errors of the decoder; each is wrapped with the details.
var (
	// ErrNotSockMux is a packet whose version byte is not SockMux 0.3's:
	// the peer speaks something else, or the line carried garbage.
	ErrNotSockMux = errors.New("not a DeleGate SockMux 0.3 packet")
	// ErrTooLong is a packet longer than PACKSIZE.
	ErrTooLong = errors.New("packet longer than PACKSIZE")
	// ErrCrypt is a peer that encrypts (DeleGate's default Credhy).
	ErrCrypt = errors.New("the DeleGate peer encrypts the tunnel (Credhy), which sockmux cannot do: set SOXCONF=crypt:no on the DeleGate side")
)

// ParseHeader parses a packet header (HeaderLen bytes) and returns the
// packet without its data and the data's length. packSize is the longest
// packet accepted, header included.
func ParseHeader(h []byte, packSize int) (Packet, int, error) {
	var p Packet
	if len(h) < HeaderLen {
		return p, 0, io.ErrUnexpectedEOF
	}
	p.Ver, p.Type = h[0], h[1]
	p.Said = binary.BigEndian.Uint16(h[2:])
	p.Raid = binary.BigEndian.Uint16(h[4:])
	n := int(binary.BigEndian.Uint16(h[6:]))
	switch {
	case p.Ver == VersionCrypt:
		return p, 0, ErrCrypt
	case p.Ver != Version:
		return p, 0, fmt.Errorf("%w: version byte 0x%02x (header % x); is the other end a DeleGate 9.x SockMux without encryption?", ErrNotSockMux, p.Ver, h[:HeaderLen])
	case HeaderLen+n > packSize:
		return p, 0, fmt.Errorf("%w: a %s packet of %d bytes, PACKSIZE is %d", ErrTooLong, TypeName(p.Type), HeaderLen+n, packSize)
	}
	return p, n, nil
}

// Reader reads packets from a byte stream.
type Reader struct {
	r        io.Reader
	hdr      [HeaderLen]byte
	buf      []byte
	PackSize int // the longest packet accepted, header included
}

// NewReader reads packets from r, at most packSize bytes each.
func NewReader(r io.Reader, packSize int) *Reader {
	return &Reader{r: r, PackSize: packSize}
}

// Read reads the next packet. Its Data is valid until the next Read.
func (r *Reader) Read() (Packet, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return Packet{}, err
	}
	p, n, err := ParseHeader(r.hdr[:], r.PackSize)
	if err != nil {
		return p, err
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n, max(n, 4096))
	}
	p.Data = r.buf[:n]
	if _, err := io.ReadFull(r.r, p.Data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return p, err
	}
	return p, nil
}

// Text returns the NUL-terminated text at the start of data and what
// follows the NUL. Without a NUL the whole of data is the text.
func Text(data []byte) (string, []byte) {
	for i, b := range data {
		if b == 0 {
			return string(data[:i]), data[i+1:]
		}
	}
	return string(data), nil
}

// withNUL is s and a NUL, the form of every text DeleGate sends.
func withNUL(s string) []byte { return append([]byte(s), 0) }

// ConnectText is the text of CONNECT ("client accepted-at") and of
// CONNECTED ("server local").
type ConnectText struct {
	BufSize int
	From    string // CONNECT: the client; CONNECTED: the server
	To      string // CONNECT: where it was accepted; CONNECTED: the exit's local address
}

// String is the text as DeleGate writes it, without the NUL.
func (c ConnectText) String() string {
	return strconv.Itoa(c.BufSize) + " " + c.From + " " + c.To
}

// ParseConnectText parses the text of CONNECT or CONNECTED.
func ParseConnectText(s string) (ConnectText, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return ConnectText{}, fmt.Errorf("CONNECT text %q is not \"bufsize host:port host:port\"", clip(s))
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 0 {
		return ConnectText{}, fmt.Errorf("CONNECT text %q: bad buffer size %q", clip(s), f[0])
	}
	return ConnectText{BufSize: n, From: f[1], To: f[2]}, nil
}

// Port returns the port of a "host:port" text, 0 if none.
func Port(hostport string) int {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return 0
	}
	n, err := strconv.Atoi(hostport[i+1:])
	if err != nil || n < 0 || n > 65535 {
		return 0
	}
	return n
}

// ParseCount parses the count of SENT: ASCII decimal, NUL-terminated.
func ParseCount(data []byte) (int, error) {
	s, _ := Text(data)
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("SENT count %q is not a number", clip(s))
	}
	return n, nil
}

// CountData is the data of SENT for n bytes.
func CountData(n int) []byte { return withNUL(strconv.Itoa(n)) }

// SetOpt is one SETOPT option.
type SetOpt struct {
	Opt   byte
	Value []byte
}

// PackSizeOpt is SETOPT PACKSIZE.
func PackSizeOpt(n int) Packet {
	return Packet{Type: TypeSETOPT, Said: NoAgent, Raid: NoAgent, Data: []byte{OptPACKSIZE, byte(n >> 8), byte(n)}}
}

// ConnDataOpt is SETOPT CONNDATA, as DeleGate sends it (on).
func ConnDataOpt() Packet {
	return Packet{Type: TypeSETOPT, Said: NoAgent, Raid: NoAgent, Data: []byte{OptCONNDATA, 1, 0}}
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
