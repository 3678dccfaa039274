package fec

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
)

// codes holds one Code per level, made on first use.
var (
	codesOnce sync.Once
	codes     []*Code
)

func codeFor(level int) *Code {
	codesOnce.Do(func() {
		codes = make([]*Code, len(Levels))
		for l, t := range Levels {
			if t > 0 {
				codes[l], _ = NewCode(t)
			}
		}
	})
	return codes[level]
}

// checkBlock validates a codeword length.
func checkBlock(n int) error {
	if n < MinBlock || n > 255 {
		return fmt.Errorf("fec: codeword length %d outside %d…255", n, MinBlock)
	}
	return nil
}

// Writer encodes a byte stream into blocks (docs/fec.md): at level 0 it
// writes the bytes as they are; at level L it cuts them into blocks of
// Capacity(n, L) bytes, each written as
//
//	marker:4 header:2 codeword:n   (codeword = count:1 data pad parity:2t)
//
// A block goes out when it is full, or padded at Flush. A Writer is not
// safe for concurrent use.
type Writer struct {
	w     io.Writer
	n     int
	level int
	pend  []byte // data of the block being filled
	wire  []byte // encoded blocks waiting for one write
	stats WriterStats
}

// WriterStats counts what a Writer sent.
type WriterStats struct {
	Blocks   uint64 // blocks written
	Padded   uint64 // bytes of padding in them (a block flushed before it was full)
	RawBytes uint64 // bytes written without a code (level 0)
}

// NewWriter returns a Writer of codeword length n (DefaultBlock, or down to
// MinBlock for lower latency on slow lines), at level 0 (off).
func NewWriter(w io.Writer, n int) (*Writer, error) {
	if err := checkBlock(n); err != nil {
		return nil, err
	}
	return &Writer{w: w, n: n}, nil
}

// Level returns the level of the blocks written now.
func (w *Writer) Level() int { return w.level }

// Stats returns the counters.
func (w *Writer) Stats() WriterStats { return w.stats }

// SetLevel changes the level from the next block on. Going to level 0
// writes what is pending in blocks, the last one flagged so that the
// reader knows plain bytes follow (an empty block when nothing is
// pending); data written before at level 0 is already out.
func (w *Writer) SetLevel(level int) error {
	if !ValidLevel(w.n, level) {
		return fmt.Errorf("fec: level %d not valid for %d-byte blocks", level, w.n)
	}
	if level == w.level {
		return nil
	}
	if level == 0 {
		// Full blocks at the old level, then the rest with the flag.
		for c := Capacity(w.n, w.level); len(w.pend) > c; w.pend = w.pend[c:] {
			w.block(w.pend[:c], 0)
		}
		w.block(w.pend, flagRaw)
		w.pend = w.pend[:0]
		w.level = 0
		return w.send()
	}
	w.level = level
	if len(w.pend) >= Capacity(w.n, level) {
		if _, err := w.Write(nil); err != nil {
			return err
		}
	}
	return nil
}

// Room returns how many more bytes fill the block being built (0 at level
// 0): a sender that can size what it writes fills blocks to avoid padding.
func (w *Writer) Room() int {
	if w.level == 0 {
		return 0
	}
	return Capacity(w.n, w.level) - len(w.pend)
}

// Write writes p: at once at level 0; otherwise every block it completes,
// keeping the rest for the next Write or Flush.
func (w *Writer) Write(p []byte) (int, error) {
	if w.level == 0 {
		w.stats.RawBytes += uint64(len(p))
		return w.w.Write(p)
	}
	c := Capacity(w.n, w.level)
	written := len(p)
	off := 0 // w.pend[:off] is in blocks already
	for {
		switch pend := len(w.pend) - off; {
		case pend >= c: // (after a change to a smaller capacity)
			w.block(w.pend[off:off+c], 0)
			off += c
			continue
		case pend > 0 && len(p) > 0:
			take := min(c-pend, len(p))
			w.pend = append(w.pend, p[:take]...)
			p = p[take:]
			continue
		case pend == 0 && len(p) >= c:
			w.block(p[:c], 0)
			p = p[c:]
			continue
		}
		break
	}
	w.pend = append(w.pend[:copy(w.pend, w.pend[off:])], p...)
	if err := w.send(); err != nil {
		return 0, err
	}
	return written, nil
}

// Flush writes the block being filled, padded, if it holds any data.
func (w *Writer) Flush() error {
	if w.level == 0 || len(w.pend) == 0 {
		return nil
	}
	w.block(w.pend, 0)
	w.pend = w.pend[:0]
	return w.send()
}

// block appends the encoding of one block of data (at most the capacity)
// to w.wire.
func (w *Writer) block(data []byte, flags int) {
	start := len(w.wire)
	w.wire = binary.BigEndian.AppendUint32(w.wire, Marker)
	w.wire = append(w.wire, 0, 0)
	putHeader(w.wire[start+markerLen:], w.level, flags)
	w.wire = append(w.wire, byte(len(data)))
	w.wire = append(w.wire, data...)
	end := start + Overhead + w.n
	pad := end - len(w.wire) - 2*Levels[w.level]
	if cur := len(w.wire); end > cur {
		w.wire = slices.Grow(w.wire, end-cur)[:end]
		clear(w.wire[cur:])
	}
	codeFor(w.level).Encode(w.wire[start+Overhead : end])
	addCoset(w.wire[start+Overhead:end], Levels[w.level])
	w.stats.Blocks++
	w.stats.Padded += uint64(pad)
}

func (w *Writer) send() error {
	if len(w.wire) == 0 {
		return nil
	}
	_, err := w.w.Write(w.wire)
	w.wire = w.wire[:0]
	return err
}
