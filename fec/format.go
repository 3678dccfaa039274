package fec

import (
	"encoding/binary"
	"math/bits"
	"strconv"
)

// Levels maps a level to the symbol errors its code corrects per block:
// level 0 is off (bytes go as they are), levels 1 … 12 correct t of them.
// The steps are about 1.3× apart where the chooser moves most (docs/fec.md
// has the table of what each level is good for).
var Levels = []int{0, 2, 3, 4, 6, 8, 12, 16, 20, 24, 32, 40, 48}

// MaxLevel is the strongest level.
var MaxLevel = len(Levels) - 1

// Marker is the sync marker that opens every block on the wire: the
// CCSDS attached sync marker 1ACFFC1D, whose autocorrelation away from
// zero shift is low, so a receiver finds it by correlation.
const Marker uint32 = 0x1ACFFC1D

// The block on the wire: Marker (4 bytes), header (2 bytes), codeword.
const (
	markerLen = 4
	headerLen = 2
	// Overhead is what a block adds on the wire besides its codeword.
	Overhead = markerLen + headerLen
)

// DefaultBlock is the default codeword length, the full RS(255, 255−2t).
const DefaultBlock = 255

// MinBlock is the shortest codeword length a Writer or Reader takes.
const MinBlock = 32

// flagRaw in a header: after this block the sender writes plain bytes.
const flagRaw = 0x10

// The header is a first-order Reed–Muller codeword RM(1,4): 5 bits in 16,
// any two codewords at least 8 bits apart, so up to 3 flipped bits are
// corrected and 4 are detected. Bits 0–3 carry the level, bit 4 flagRaw.
var rmWords [32]uint16

func init() {
	// Generator rows: all ones, and x_i(j) = bit i of j for j < 16.
	var rows [5]uint16
	rows[0] = 0xFFFF
	for i := 0; i < 4; i++ {
		for j := 0; j < 16; j++ {
			if j>>i&1 != 0 {
				rows[i+1] |= 1 << j
			}
		}
	}
	for m := 0; m < 32; m++ {
		var w uint16
		for i := 0; i < 5; i++ {
			if m>>i&1 != 0 {
				w ^= rows[i]
			}
		}
		rmWords[m] = w
	}
}

// putHeader writes the header of a block of level with flags.
func putHeader(dst []byte, level int, flags int) {
	binary.BigEndian.PutUint16(dst, rmWords[level|flags])
}

// parseHeader decodes a header: the level, the flags and the bits it
// corrected; ok is false when it lies 4 or more bits from every codeword
// or names no level.
func parseHeader(src []byte, maxFlips int) (level, flags, flips int, ok bool) {
	h := binary.BigEndian.Uint16(src)
	best, bestD := 0, 17
	for m, w := range rmWords {
		if d := bits.OnesCount16(h ^ w); d < bestD {
			best, bestD = m, d
		}
	}
	level, flags = best&0x0F, best&^0x0F
	if bestD > maxFlips || level == 0 || level > MaxLevel {
		return 0, 0, bestD, false
	}
	return level, flags, bestD, true
}

// markerDistance is the number of bits in which b[:4] differs from Marker.
func markerDistance(b []byte) int {
	return bits.OnesCount32(binary.BigEndian.Uint32(b) ^ Marker)
}

// Corrects returns how many wrong bytes the decoder corrects in a block
// of level: t for t ≥ 12, and t−1 below, where the last parity pair is
// kept for detection. With all t a block with more errors is miscorrected
// (decoded to wrong data, reported good) with probability about
// C(255,t)·255^t/256^(2t): 0.49 at t = 2, 0.16 at 3, 0.04 at 4, 1.2·10⁻³
// at 6, 2·10⁻⁵ at 8; with t−1: 1.5·10⁻⁵, 7.5·10⁻⁶, 2.5·10⁻⁶, 1.2·10⁻⁷,
// 1.5·10⁻⁸, for 0.8 % of the line at equal strength. From t = 12 on all t
// are used (1.5·10⁻⁹ and less).
func Corrects(level int) int {
	t := Levels[level]
	if t <= 8 {
		return t - 1
	}
	return t
}

// Capacity returns how many bytes of data one block of codeword length n
// carries at level (0 for level 0, off): the codeword less the parity and
// the count byte.
func Capacity(n, level int) int {
	if level <= 0 || level > MaxLevel {
		return 0
	}
	return n - 2*Levels[level] - 1
}

// ValidLevel reports whether blocks of codeword length n can use level:
// its parity must leave at least half the block for data.
func ValidLevel(n, level int) bool {
	return level == 0 || (level > 0 && level <= MaxLevel && 4*Levels[level] <= n)
}

// Efficiency is the share of the line a fully used block gives to data at
// level: Capacity/(n+Overhead); 1 when off.
func Efficiency(n, level int) float64 {
	if level == 0 {
		return 1
	}
	return float64(Capacity(n, level)) / float64(n+Overhead)
}

// coset is added to the parity of every codeword on the wire (the code
// used is a coset of the Reed–Solomon code). A Reed–Solomon code is
// cyclic: without it, a block whose first byte was dropped is, but for
// the first byte of the next marker at its end, a rotated codeword, and
// the decoder "corrects" it to wrong data with one error. With the coset
// a rotated block differs from every rotated codeword in about 2t+1 bytes
// (the coset and its rotation), so a slip looks like any other overload:
// reported, or miscorrected with the small probability TestBeyondT
// measures for random damage. The coset's bytes are pseudo-random (a
// geometric sequence will not do: its rotation differs from it by a
// multiple of itself, which the decoder takes for a single error), and
// no byte equals any of the 8 after it (TestCoset). The data bytes stay
// in the clear.
var coset [2 * MaxT]byte

func init() {
	x := uint32(0x9E3779B9)
	for j := 0; j < len(coset); {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b := byte(x >> 24)
		ok := b != 0
		for d := 1; d <= 8 && d <= j; d++ {
			ok = ok && coset[j-d] != b
		}
		if ok {
			coset[j] = b
			j++
		}
	}
}

// addCoset adds (XOR) the coset to the parity at the end of cw.
func addCoset(cw []byte, t int) {
	par := cw[len(cw)-2*t:]
	for j := range par {
		par[j] ^= coset[j]
	}
}

func levelName(t int) string { return "t=" + strconv.Itoa(t) }

func itoa(i int) string { return strconv.Itoa(i) }
