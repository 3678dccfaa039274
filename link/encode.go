package link

import (
	"encoding/binary"
	"time"
)

// emitData encodes data frame f with the current ack. A frame too long
// for the line's error rate now is resent in fragments, one per call.
func (c *conn) emitData(wire []byte, f *outFrame, now time.Time) []byte {
	l := c.l
	if f.tx != 0 {
		f.resent = true
		if payload := f.raw[dataHeader:]; len(payload) > 2*l.sizeCap {
			return c.emitFragment(wire, f, payload, now)
		}
	}
	binary.BigEndian.PutUint16(f.raw[3:], l.ackNow())
	if len(l.ooo) == 0 {
		c.ackDue = false
	}
	l.transmitted(f, now)
	var out []byte
	if c.raw() && c.auth == nil {
		out = c.emitInPlace(f)
		c.writing = f
	} else {
		out = c.emit(wire, f.raw)
	}
	f.wireLen = len(out)
	return out
}

// emitInPlace encodes data frame f as a length-prefixed frame in its own
// buffer, which has room for the header before it and the CRC after it:
// the payload is written to the transport from where the upper layer put
// it, without a copy. The writer is done with the buffer before f can be
// acknowledged and reused.
func (c *conn) emitInPlace(f *outFrame) []byte {
	c.note(f.raw)
	return sealRaw(f.head[:rawHeader+len(f.raw)], 0)
}

// emitFragment sends the next piece of f the peer lacks; the
// retransmission is complete when the last such piece is out. When the
// peer reported holding all of it (its ack must have been lost), the last
// byte goes alone, which the peer answers with an ack.
func (c *conn) emitFragment(wire []byte, f *outFrame, payload []byte, now time.Time) []byte {
	l := c.l
	start, end, ok := f.nextPiece(f.fragOff, l.sizeCap)
	if !ok {
		start, end = len(payload)-1, len(payload)
	}
	frag := make([]byte, 0, fragHeader+end-start+crcSize)
	frag = append(frag, frameFrag)
	frag = binary.BigEndian.AppendUint16(frag, f.seq)
	frag = binary.BigEndian.AppendUint16(frag, l.ackNow())
	frag = binary.BigEndian.AppendUint16(frag, uint16(len(payload)))
	frag = binary.BigEndian.AppendUint16(frag, uint16(start))
	frag = append(frag, payload[start:end]...)
	f.fragOff = end
	if _, _, more := f.nextPiece(end, l.sizeCap); !more {
		f.fragOff = 0
		f.lastEnd = end
		l.transmitted(f, now)
	}
	return c.emit(wire, frag)
}

// emitPieces encodes the PIECES frame of the first frame in piecesDue
// still arriving in fragments; nil when none is.
func (c *conn) emitPieces(wire, scratch []byte) []byte {
	var spans [maxPieceSpans]span
	for len(c.piecesDue) > 0 {
		seq := c.piecesDue[0]
		c.piecesDue = c.piecesDue[1:]
		if total, held, ok := c.l.heldSpans(seq, spans[:0]); ok {
			return c.emit(wire, piecesFrame(scratch, seq, total, held))
		}
	}
	c.piecesDue = nil
	return nil
}

// emitAck encodes an ack: the cumulative ack and the selective-ack bitmap
// as of now.
func (c *conn) emitAck(wire, scratch []byte) []byte {
	c.ackDue = false
	sack := c.l.sack() // of the same rxNext as the cumulative ack
	return c.emit(wire, ackFrame(scratch, c.l.ackNow(), sack))
}

// emit encodes one frame for the wire, sealed once keys exist.
func (c *conn) emit(wire, frame []byte) []byte {
	c.note(frame)
	sealed := c.auth.sealed(frame)
	if c.raw() {
		if !sealed {
			return encodeRaw(wire, frame)
		}
		// Sealed straight into the wire buffer, after the header's room.
		start := len(wire)
		return sealRaw(c.auth.sealTo(append(wire, 0, 0, 0, 0, 0), frame), start)
	}
	if sealed {
		frame = c.auth.seal(frame)
	}
	return encodeFrame(wire, frame)
}

// note records that frame goes out now, and logs it at debug level.
func (c *conn) note(frame []byte) {
	c.lastSend = time.Now()
	if c.trace {
		c.l.log.Debug("frame out", "type", frameName(frame[0]), "len", len(frame))
	}
}

// raw reports whether frames go out length-prefixed: the peer reads them
// and our hello saying so went out before, under l.mu.
func (c *conn) raw() bool { return c.rawOut && c.toldRaw }
