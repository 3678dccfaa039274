package fec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// channel damages a byte stream as the virtual cable does (cable/faults.go):
// each bit flipped with probability ber, bytes dropped and garbage bytes
// inserted at their rates, and noise bursts that replace every byte.
type channel struct {
	rng                  *rand.Rand
	ber, drop, insert    float64
	burstEvery, burstLen int64 // in bytes of the line
	untilFlip            int64
	pos                  int64
	flips                int64
}

func geometricDraw(rng *rand.Rand, p float64) int64 {
	if p <= 0 {
		return math.MaxInt64 / 4
	}
	return int64(math.Floor(math.Log(1-rng.Float64()) / math.Log1p(-p)))
}

func (ch *channel) apply(in []byte) []byte {
	if ch.ber > 0 {
		total := 8 * int64(len(in))
		p := ch.untilFlip
		for p < total {
			in[p/8] ^= 1 << (p % 8)
			ch.flips++
			p += 1 + geometricDraw(ch.rng, ch.ber)
		}
		ch.untilFlip = p - total
	}
	if ch.burstEvery > 0 {
		for i := range in {
			if (ch.pos+int64(i))%ch.burstEvery < ch.burstLen {
				in[i] = byte(ch.rng.Uint32())
			}
		}
	}
	ch.pos += int64(len(in))
	if ch.drop == 0 && ch.insert == 0 {
		return in
	}
	out := make([]byte, 0, len(in)+8)
	for _, b := range in {
		if ch.rng.Float64() < ch.insert {
			out = append(out, byte(ch.rng.Uint32()))
		}
		if ch.rng.Float64() < ch.drop {
			continue
		}
		out = append(out, b)
	}
	return out
}

// simRow is one line of the simulation's table.
type simRow struct {
	name                   string
	ber                    float64
	first, steady          float64 // goodput × line: the first 64 KiB of frames, and after
	frameLoss              float64 // frames lost after FEC (steady part)
	blockLoss              float64
	levels                 string // t used in the steady part, by share of blocks
	undetected, framesSent int
	cpu                    time.Duration
}

// simulate makes a handshake of three hellos in blocks at the probe level
// (which the chooser measures), then sends frames like the link's (COBS, CRC-32C, 0x00; bodies of
// 1024 bytes) back to back through a Writer whose level a Chooser at the
// receiving end picks (applied one frame later, the feedback's delay),
// over ch, and counts the frames that arrive intact. Goodput is the wire
// bytes of the frames received intact over the bytes the line carried:
// the link's own framing overhead aside.
func simulate(name string, ch *channel, frames int) simRow {
	row := simRow{name: name, ber: ch.ber, framesSent: frames}
	rng := rand.New(rand.NewPCG(uint64(frames), 99))
	var wire bytes.Buffer
	w, _ := NewWriter(&wire, DefaultBlock)
	d, _ := NewDecoder(DefaultBlock)
	ch2 := NewChooser(DefaultBlock)
	ch2.FrameBytes = 1024 + 16
	levelBlocks := map[int]int{}
	steadyFrom := 64 // frames of 1 KiB: the first 64 KiB
	phase := 0
	var blocks, lost [2]uint64
	d.OnBlock = func(level, corrected int, ok bool) {
		ch2.Observe(level, corrected, ok)
		blocks[phase]++
		if !ok {
			lost[phase]++
		}
		if phase == 1 {
			levelBlocks[Levels[level]]++
		}
	}
	sent := map[uint32][]byte{}
	var goodBytes, lineBytes [2]int
	var goodFrames [2]int
	var pending []byte // decoded bytes not yet ending in 0x00
	hello := bytes.Repeat([]byte{0x55}, 60)
	start := time.Now()
	parse := func(out []byte) {
		pending = append(pending, out...)
		for {
			i := bytes.IndexByte(pending, 0)
			if i < 0 {
				return
			}
			chunk := pending[:i+1]
			pending = pending[i+1:]
			good, bad := parseFrames(chunk)
			if ch2.Level() == 0 {
				ch2.ObserveFrames(len(good), bad)
			}
			for _, g := range good {
				if bytes.Equal(g, hello) {
					continue
				}
				seq := binary.BigEndian.Uint32(g)
				if want, ok := sent[seq]; !ok || !bytes.Equal(want, g) {
					row.undetected++
					continue
				}
				delete(sent, seq)
				p := 0 // counted in the phase it was sent in
				if int(seq) >= steadyFrom {
					p = 1
				}
				goodFrames[p]++
				goodBytes[p] += len(cobsFrame(nil, g))
			}
		}
	}
	// The handshake, as the link will do it: hellos in blocks of the probe
	// level, each flushed in its own block; the receiver's chooser
	// measures the line on them before the first data.
	w.SetLevel(probeLevel)
	for h := 0; h < 3; h++ {
		w.Write(cobsFrame([]byte{0}, hello))
		w.Flush()
		lineBytes[0] += wire.Len()
		parse(d.Feed(nil, ch.apply(bytes.Clone(wire.Bytes()))))
		wire.Reset()
	}
	for i := 0; i < frames; i++ {
		if i == steadyFrom {
			phase = 1
		}
		body := make([]byte, 1024)
		for j := range body {
			body[j] = byte(rng.Uint32())
		}
		binary.BigEndian.PutUint32(body, uint32(i))
		sent[uint32(i)] = body
		if err := w.SetLevel(ch2.Level()); err != nil {
			panic(err)
		}
		w.Write(cobsFrame(nil, body))
		line := ch.apply(bytes.Clone(wire.Bytes()))
		lineBytes[phase] += wire.Len()
		wire.Reset()
		parse(d.Feed(nil, line))
	}
	w.Flush()
	w.SetLevel(0)
	lineBytes[1] += wire.Len()
	parse(d.Feed(nil, ch.apply(bytes.Clone(wire.Bytes()))))
	row.cpu = time.Since(start)
	row.first = float64(goodBytes[0]) / float64(lineBytes[0])
	row.steady = float64(goodBytes[1]) / float64(lineBytes[1])
	row.frameLoss = 1 - float64(goodFrames[1])/float64(frames-steadyFrom)
	if blocks[1]+lost[1] > 0 {
		row.blockLoss = float64(lost[1]) / float64(blocks[1])
	}
	total := 0
	for _, n := range levelBlocks {
		total += n
	}
	var parts []string
	for _, t := range Levels {
		if n := levelBlocks[t]; n*50 >= total && n > 0 {
			parts = append(parts, fmt.Sprintf("t=%d %.0f%%", t, 100*float64(n)/float64(total)))
		}
	}
	if total == 0 {
		parts = []string{"off"}
	}
	row.levels = strings.Join(parts, ", ")
	return row
}

// TestSimulation is the table of docs/fec.md: goodput after the code, per
// bit error rate, with the chooser deciding, and the residual loss; it
// asserts the targets where the code alone decides them, from the
// handshake on.
func TestSimulation(t *testing.T) {
	frames := 400 // 400 KiB a row: 35 s of a 115200 line
	if testing.Short() {
		frames = 150
	}
	rows := []struct {
		name   string
		ch     channel
		target float64
	}{
		{"clean", channel{}, 0.97},
		{"1e-4", channel{ber: 1e-4}, 0.90},
		{"1e-3", channel{ber: 1e-3}, 0.80},
		{"3e-3", channel{ber: 3e-3}, 0.65},
		{"1e-2", channel{ber: 1e-2}, 0.40},
		// Not a row of the issue's: as 1e-3, since a dropped or inserted
		// byte is repaired.
		{"1e-3, drop+insert 1e-4", channel{ber: 1e-3, drop: 1e-4, insert: 1e-4}, 0.80},
		// 200 ms of noise every 2 s at 115200 baud (11520 bytes/s).
		{"bursts 200ms/2s", channel{burstEvery: 23040, burstLen: 2304}, 0.80 * 0.9},
	}
	var out strings.Builder
	fmt.Fprintf(&out, "| line | goodput × line, first 64 KiB | after | target | frames lost after FEC | blocks lost | code used (after) | CPU |\n")
	fmt.Fprintf(&out, "|---|---|---|---|---|---|---|---|\n")
	for i, r := range rows {
		ch := r.ch
		ch.rng = rand.New(rand.NewPCG(uint64(i), 7))
		ch.untilFlip = geometricDraw(ch.rng, ch.ber)
		res := simulate(r.name, &ch, frames)
		fmt.Fprintf(&out, "| %s | %.3f | %.3f | %.2f | %.2g | %.2g | %s | %v |\n",
			r.name, res.first, res.steady, r.target, res.frameLoss, res.blockLoss, res.levels, res.cpu.Round(time.Millisecond))
		if res.undetected != 0 {
			t.Errorf("%s: %d frames passed the CRC with wrong data", r.name, res.undetected)
		}
		if res.steady < r.target || res.first < r.target {
			t.Errorf("%s: goodput %.3f (first 64 KiB %.3f) below the target %.2f", r.name, res.steady, res.first, r.target)
		}
	}
	t.Log("\n" + out.String())
}
