package link

import (
	"sync"
	"time"
)

// outFrame is a data frame sent and not yet acknowledged.
type outFrame struct {
	head    []byte // room for a length-prefixed frame's header, just before raw
	raw     []byte // type, seq, ack, payload; room for the CRC after it
	seq     uint16
	sentAt  time.Time
	wireLen int    // encoded length at the last transmission
	plain   int    // payload bytes before compression
	tx      uint64 // txCount at the last transmission
	resent  bool   // transmitted more than once (no RTT sample: Karn)
	sacked  bool   // the peer holds it out of order
	pending bool   // due for (re)transmission
	fragOff int    // resending in fragments: the next piece's offset
	lastEnd int    // resending in fragments: where the round's last piece ended
	held    []span // resending in fragments: what the peer said it holds (PIECES)
	// acknowledged while the writer wrote it: recycled after the write
	freeLater bool
}

var framePool sync.Pool

// getFrame returns a frame buffer with room for a payload of n bytes.
func getFrame(n int) *outFrame {
	need := dataHeader + n + crcSize
	if f, ok := framePool.Get().(*outFrame); ok && cap(f.raw) >= need {
		f.raw = f.raw[:need]
		return f
	}
	buf := make([]byte, rawHeader+need)
	return &outFrame{head: buf[:rawHeader], raw: buf[rawHeader:]}
}

func putFrame(f *outFrame) {
	*f = outFrame{head: f.head, raw: f.raw[:0]}
	framePool.Put(f)
}

// freeFrame recycles an acknowledged frame, under l.mu; one the writer is
// still writing from its own buffer goes back once the write returned.
// (The peer cannot acknowledge a frame before the transport took all of
// it, but a frame buffer may serve another link in this process next, and
// only the writer's lock orders its write before that.)
func (l *Link) freeFrame(f *outFrame) {
	if c := l.cur; c != nil && c.writing == f {
		f.freeLater = true
		return
	}
	putFrame(f)
}
