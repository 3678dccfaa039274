package fec

// Arithmetic in GF(2^8) with the primitive polynomial x^8+x^4+x^3+x^2+1
// (0x11D) and generator α = 2, the field of most Reed–Solomon codes
// (CCSDS, DVB, QR). Addition is XOR; multiplication goes through a full
// 256×256 table (64 KiB), so that the inner loops of the encoder and the
// syndromes are one load and one XOR a byte.

const gfPoly = 0x11D

var (
	gfExp [512]byte // gfExp[i] = α^i, doubled so that gfExp[a+b] needs no mod
	gfLog [256]int  // gfLog[α^i] = i; gfLog[0] is unused
	gfMul [256][256]byte
)

func init() {
	x := 1
	for i := 0; i < 255; i++ {
		gfExp[i] = byte(x)
		gfLog[x] = i
		x <<= 1
		if x&0x100 != 0 {
			x ^= gfPoly
		}
	}
	for i := 255; i < len(gfExp); i++ {
		gfExp[i] = gfExp[i-255]
	}
	for a := 1; a < 256; a++ {
		for b := 1; b < 256; b++ {
			gfMul[a][b] = gfExp[gfLog[a]+gfLog[b]]
		}
	}
}

func mul(a, b byte) byte { return gfMul[a][b] }

// div returns a/b; b must not be 0.
func div(a, b byte) byte {
	if a == 0 {
		return 0
	}
	return gfExp[gfLog[a]+255-gfLog[b]]
}

// inv returns 1/a; a must not be 0.
func inv(a byte) byte { return gfExp[255-gfLog[a]] }
