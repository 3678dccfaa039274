package fec

import (
	"errors"
	"fmt"
)

// ErrUncorrectable reports a block with more symbol errors than its code
// corrects (or errors the decoder could not place). The block is left as
// it was.
var ErrUncorrectable = errors.New("fec: uncorrectable block")

// MaxT is the largest number of symbol errors a Code may correct.
const MaxT = 64

// Code is a systematic Reed–Solomon code over GF(256) with 2t parity
// symbols, generator polynomial g(x) = (x−α^0)(x−α^1)…(x−α^(2t−1)). A
// block of n ≤ 255 bytes (a shortened code when n < 255) holds n−2t data
// bytes followed by the 2t parity bytes; byte 0 is the coefficient of
// x^(n−1). Decode corrects up to t wrong bytes anywhere in the block. A
// Code is immutable and safe for concurrent use.
type Code struct {
	t   int
	gen []byte // g's coefficients below the leading 1, highest first: 2t bytes
}

// NewCode returns the code that corrects t symbol errors, 1 ≤ t ≤ MaxT.
func NewCode(t int) (*Code, error) {
	if t < 1 || t > MaxT {
		return nil, fmt.Errorf("fec: t = %d outside 1..%d", t, MaxT)
	}
	// g(x) = Π (x − α^i), built lowest coefficient first.
	g := []byte{1}
	for i := 0; i < 2*t; i++ {
		a := gfExp[i]
		next := make([]byte, len(g)+1)
		for j, c := range g {
			next[j+1] ^= c       // x·g
			next[j] ^= mul(c, a) // α^i·g
		}
		g = next
	}
	// g is monic of degree 2t; keep the others, highest first.
	gen := make([]byte, 2*t)
	for j := range gen {
		gen[j] = g[2*t-1-j]
	}
	return &Code{t: t, gen: gen}, nil
}

// T returns how many symbol errors the code corrects.
func (c *Code) T() int { return c.t }

// Parity returns the number of parity bytes, 2t.
func (c *Code) Parity() int { return 2 * c.t }

func (c *Code) check(block []byte) {
	if len(block) > 255 || len(block) <= 2*c.t {
		panic(fmt.Sprintf("fec: block of %d bytes for a code with %d parity bytes", len(block), 2*c.t))
	}
}

// Encode computes the parity of the data in block[:len(block)−2t] and
// writes it to the last 2t bytes. len(block) must be in 2t+1 … 255.
func (c *Code) Encode(block []byte) {
	c.check(block)
	np := 2 * c.t
	k := len(block) - np
	par := block[k:]
	clear(par)
	gen := c.gen
	for _, d := range block[:k] {
		// The remainder of (data·x^2t) mod g, one data byte at a time:
		// a linear feedback shift register.
		fb := d ^ par[0]
		row := &gfMul[fb]
		copy(par, par[1:])
		par[np-1] = 0
		for j, g := range gen {
			par[j] ^= row[g]
		}
	}
}

// syndromes fills s[j] = r(α^j), j < 2t, and reports whether all are 0.
// Four syndromes are computed per pass over the block: each is a chain of
// dependent table look-ups (Horner's rule), and four chains side by side
// run about three times as fast as one after the other.
func (c *Code) syndromes(block []byte, s []byte) bool {
	j := 0
	for ; j+4 <= len(s); j += 4 {
		r0, r1, r2, r3 := &gfMul[gfExp[j]], &gfMul[gfExp[j+1]], &gfMul[gfExp[j+2]], &gfMul[gfExp[j+3]]
		var v0, v1, v2, v3 byte
		for _, b := range block {
			v0 = r0[v0] ^ b
			v1 = r1[v1] ^ b
			v2 = r2[v2] ^ b
			v3 = r3[v3] ^ b
		}
		s[j], s[j+1], s[j+2], s[j+3] = v0, v1, v2, v3
	}
	for ; j < len(s); j++ {
		row := &gfMul[gfExp[j]]
		var v byte
		for _, b := range block {
			v = row[v] ^ b
		}
		s[j] = v
	}
	for _, v := range s {
		if v != 0 {
			return false
		}
	}
	return true
}

// Decode corrects block in place and returns the number of bytes it
// changed. When the block has more than t errors it returns
// ErrUncorrectable and leaves the block as it was, except in the rare case
// (a miscorrection) where the damage happens to lie within t symbols of
// another codeword: then that codeword is returned, which is why a
// checksum above the code is still needed (docs/fec.md).
func (c *Code) Decode(block []byte) (int, error) {
	c.check(block)
	var sb [2 * MaxT]byte
	s := sb[:2*c.t]
	if c.syndromes(block, s) {
		return 0, nil
	}
	lambda, L := berlekampMassey(s)
	if L > c.t {
		return 0, ErrUncorrectable
	}
	// Chien search: the roots of Λ are X⁻¹ = α^(−e) for the error at
	// degree e, which is byte n−1−e.
	n := len(block)
	var pos [MaxT]int
	var xs [MaxT]byte
	found := 0
	var terms [MaxT + 1]byte
	copy(terms[:], lambda[:L+1])
	for e := 0; e < n; e++ {
		var v byte
		for j := 0; j <= L; j++ {
			v ^= terms[j]
		}
		if v == 0 {
			if found == L {
				return 0, ErrUncorrectable // more roots than the degree: impossible, but safe
			}
			pos[found] = n - 1 - e
			xs[found] = gfExp[e]
			found++
		}
		for j := 1; j <= L; j++ {
			if terms[j] != 0 {
				terms[j] = gfMul[terms[j]][gfExp[255-j%255]]
			}
		}
	}
	if found != L {
		return 0, ErrUncorrectable // some roots lie outside the block
	}
	// Forney: Ω(x) = S(x)Λ(x) mod x^2t; the error at X is
	// X·Ω(X⁻¹)/Λ'(X⁻¹) (first root α^0).
	var ob [2 * MaxT]byte
	omega := ob[:2*c.t]
	for i := range omega {
		var v byte
		for j := 0; j <= L && j <= i; j++ {
			v ^= mul(lambda[j], s[i-j])
		}
		omega[i] = v
	}
	var ys [MaxT]byte
	for k := 0; k < found; k++ {
		xinv := inv(xs[k])
		// Ω(X⁻¹), Horner from the top.
		var num byte
		for i := len(omega) - 1; i >= 0; i-- {
			num = mul(num, xinv) ^ omega[i]
		}
		// Λ'(X⁻¹): in characteristic 2 only odd powers survive.
		var den byte
		xinv2 := mul(xinv, xinv)
		pw := byte(1)
		for j := 1; j <= L; j += 2 {
			den ^= mul(lambda[j], pw)
			pw = mul(pw, xinv2)
		}
		if den == 0 {
			return 0, ErrUncorrectable
		}
		y := mul(xs[k], div(num, den))
		if y == 0 {
			return 0, ErrUncorrectable
		}
		ys[k] = y
	}
	for k := 0; k < found; k++ {
		block[pos[k]] ^= ys[k]
	}
	// The corrected block must be a codeword; anything else is undone.
	if !c.syndromes(block, s) {
		for k := 0; k < found; k++ {
			block[pos[k]] ^= ys[k]
		}
		return 0, ErrUncorrectable
	}
	return found, nil
}

// berlekampMassey returns the error locator Λ (lowest coefficient first,
// Λ0 = 1) of the syndromes s and its degree L.
func berlekampMassey(s []byte) ([2*MaxT + 1]byte, int) {
	var C, B, T [2*MaxT + 1]byte
	C[0], B[0] = 1, 1
	L, m := 0, 1
	b := byte(1)
	for n := range s {
		d := s[n]
		for i := 1; i <= L; i++ {
			d ^= mul(C[i], s[n-i])
		}
		if d == 0 {
			m++
			continue
		}
		coef := div(d, b)
		if 2*L <= n {
			T = C
			for i := 0; i+m < len(C); i++ {
				C[i+m] ^= mul(coef, B[i])
			}
			L = n + 1 - L
			B = T
			b = d
			m = 1
		} else {
			for i := 0; i+m < len(C); i++ {
				C[i+m] ^= mul(coef, B[i])
			}
			m++
		}
	}
	return C, L
}
