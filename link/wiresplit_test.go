package link

import "encoding/binary"

// wireUnit is one frame (or idle delimiter) as written on the wire.
type wireUnit struct {
	enc   []byte // the bytes on the wire
	frame []byte // decoded frame, CRC included; nil if it does not decode
	raw   bool   // length-prefixed rather than COBS
}

// reencode returns frame (CRC included) in the unit's wire format.
func (u wireUnit) reencode(frame []byte) []byte {
	if u.raw {
		out := append([]byte{0}, binary.BigEndian.AppendUint32(nil, uint32(len(frame)))...)
		return append(out, frame...)
	}
	return append(cobsEncode(nil, frame), 0)
}

// wireSplit cuts what one side writes into wire units, COBS and
// length-prefixed alike, for tests that look at or change frames.
type wireSplit struct{ buf []byte }

// feed adds chunk and returns the units it completed.
func (w *wireSplit) feed(chunk []byte) []wireUnit {
	w.buf = append(w.buf, chunk...)
	var units []wireUnit
	for len(w.buf) > 0 {
		if w.buf[0] == 0 {
			if len(w.buf) < rawHeader {
				return units // a delimiter, or the start of a raw frame
			}
			n := int(binary.BigEndian.Uint32(w.buf[1:]))
			if n <= 70<<10 && n >= 1+crcSize { // a raw frame
				if len(w.buf) < rawHeader+n {
					return units
				}
				enc := w.buf[:rawHeader+n]
				w.buf = w.buf[rawHeader+n:]
				frame := append([]byte(nil), enc[rawHeader:]...)
				units = append(units, wireUnit{enc: enc, frame: frame, raw: true})
				continue
			}
			units = append(units, wireUnit{enc: w.buf[:1]}) // idle delimiter
			w.buf = w.buf[1:]
			continue
		}
		i := indexZero(w.buf)
		if i < 0 {
			return units
		}
		enc := w.buf[:i+1]
		w.buf = w.buf[i+1:]
		u := wireUnit{enc: enc}
		if dec, err := cobsDecode(nil, enc[:i]); err == nil {
			u.frame = dec
		}
		units = append(units, u)
	}
	return units
}

// inRaw reports whether a length-prefixed frame is partly buffered.
func (w *wireSplit) inRaw() bool {
	if len(w.buf) < rawHeader || w.buf[0] != 0 {
		return false
	}
	n := int(binary.BigEndian.Uint32(w.buf[1:]))
	return n <= 70<<10 && n >= 1+crcSize
}
