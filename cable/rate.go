package cable

import "math"

// Rate following: the cable reads the speed each end's program set on its
// pseudo-terminal, paces each direction at the sending end's speed, and,
// when the receiving end listens at another speed, delivers what a UART at
// that speed would make of the signal. The signal is modelled with 8N1
// frames (a 0 start bit, 8 data bits least significant first, a 1 stop
// bit) sent back to back within a chunk, the line idle (1) before and
// after it.

// frameCells is the bit cells of an 8N1 frame.
const frameCells = 10

// misframe returns what a UART receiving at rx bits per second makes of in
// sent at tx: it waits for a falling edge (a start bit), samples the 8 data
// bits and the stop bit in the middle of its own bit times, and delivers
// the byte it sampled; a frame of all zeros with a 0 stop bit (a break) is
// delivered as 0, as Linux does without PARMRK. At a rate within a few
// percent of tx the bytes come through intact, as on a real line; further
// off they turn into plausible framing garbage, fewer bytes than were sent
// when rx is slower, more when it is faster.
func misframe(in []byte, tx, rx int) []byte {
	if tx <= 0 || rx <= 0 || tx == rx || len(in) == 0 {
		return in
	}
	total := frameCells * len(in)
	level := func(cell int) bool { // true: mark (1)
		if cell < 0 || cell >= total {
			return true
		}
		i, bit := cell/frameCells, cell%frameCells
		switch bit {
		case 0:
			return false
		case frameCells - 1:
			return true
		}
		return in[i]>>(bit-1)&1 == 1
	}
	r := float64(tx) / float64(rx) // one receiver bit, in sender cells
	out := make([]byte, 0, int(float64(len(in))/r)+2)
	pos := 0.0
	for {
		// The next falling edge at or after pos.
		k := int(math.Ceil(pos))
		for k < total && (level(k) || !level(k-1)) {
			k++
		}
		if k >= total {
			return out
		}
		start := float64(k)
		var b byte
		for j := range 8 {
			if level(int(start + (1.5+float64(j))*r)) {
				b |= 1 << j
			}
		}
		out = append(out, b) // a framing error or a break arrives as sampled (0 for a break)
		pos = start + (frameCells-0.5)*r
	}
}
