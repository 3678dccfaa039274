package mux

import "encoding/binary"

// This file lets a layer under the mux that is not sockmux's link (package
// dgwire, which speaks DeleGate's SockMux) translate the mux's messages to
// another wire and back: it parses what Fill returns and builds what
// Deliver takes.

// MsgType is the type of a mux message.
type MsgType byte

// Message types, for translators.
const (
	MsgOpen         MsgType = msgOpen
	MsgAccept       MsgType = msgAccept
	MsgData         MsgType = msgData
	MsgWindow       MsgType = msgWindow
	MsgFin          MsgType = msgFin
	MsgReset        MsgType = msgReset
	MsgListen       MsgType = msgListen
	MsgListenResult MsgType = msgListenResult
)

// Msg is one parsed mux message. Data aliases the payload parsed.
type Msg struct {
	Type   MsgType
	Stream uint32
	Data   []byte        // DATA: the bytes
	N      uint64        // WINDOW: the increment
	Code   ResetCode     // RESET
	Reason string        // RESET
	Info   Info          // OPEN
	Listen ListenRequest // LISTEN
	Close  bool          // LISTEN: close the listener of Listen.Tag instead
}

// ParseMsgs calls f for each message of a payload that Fill returned.
func ParseMsgs(p []byte, f func(Msg) error) error {
	for len(p) > 0 {
		m, n, err := parseMessage(p, 1<<24)
		if err != nil {
			return err
		}
		p = p[n:]
		out := Msg{Type: MsgType(m.typ), Stream: m.sid}
		switch m.typ {
		case msgData:
			out.Data = m.body
		case msgWindow:
			out.N = m.n
		case msgReset:
			out.Code, out.Reason = ResetCode(m.n), string(m.body)
		case msgOpen:
			err = parseTLV(m.body, func(tag byte, val []byte) error {
				var err error
				var v uint64
				switch tag {
				case tagNetwork:
					out.Info.Network = string(val)
				case tagDest:
					out.Info.Dest = string(val)
				case tagEntrance:
					v, err = tlvUvarint(val)
					out.Info.Entrance = int(v)
				case tagClient:
					out.Info.Client = string(val)
				case tagTag:
					out.Info.Tag, err = tlvUvarint(val)
				case tagProto:
					out.Info.Proto = string(val)
				case tagService:
					out.Info.Service = string(val)
				}
				return err
			})
		case msgListen, msgListenResult:
			err = parseTLV(m.body, func(tag byte, val []byte) error {
				var err error
				var v uint64
				switch tag {
				case tagNetwork:
					out.Listen.Network = string(val)
				case tagBind:
					out.Listen.Bind = string(val)
				case tagTag:
					out.Listen.Tag, err = tlvUvarint(val)
				case tagClose:
					v, err = tlvUvarint(val)
					out.Close = v != 0
				}
				return err
			})
		}
		if err != nil {
			return err
		}
		if err := f(out); err != nil {
			return err
		}
	}
	return nil
}

// AppendOpen appends an OPEN of stream id.
func AppendOpen(dst []byte, id uint32, info Info) []byte {
	return append(dst, openMessage(id, info)...)
}

// AppendAccept appends an ACCEPT of stream id.
func AppendAccept(dst []byte, id uint32) []byte { return header(dst, msgAccept, id) }

// AppendData appends a DATA message.
func AppendData(dst []byte, id uint32, data []byte) []byte {
	return withBody(header(dst, msgData, id), data)
}

// AppendWindow appends a WINDOW message; n must be positive.
func AppendWindow(dst []byte, id uint32, n uint64) []byte {
	return binary.AppendUvarint(header(dst, msgWindow, id), n)
}

// AppendFin appends a FIN.
func AppendFin(dst []byte, id uint32) []byte { return header(dst, msgFin, id) }

// AppendReset appends a RESET.
func AppendReset(dst []byte, id uint32, code ResetCode, reason string) []byte {
	return append(dst, resetMessage(id, code, reason)...)
}

// AppendListenResult appends the answer to a LISTEN; why is empty on
// success.
func AppendListenResult(dst []byte, req ListenRequest, why string, closing bool) []byte {
	return append(dst, listenResult(req, why, closing)...)
}
