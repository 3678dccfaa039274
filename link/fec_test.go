package link

import (
	"encoding/binary"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/fec"
)

// On a noisy line both directions turn the code on, each at a level for
// what it measures, and everything arrives whole; the handshake completes
// even at BER 1e-2.
func TestFECNoisyLine(t *testing.T) {
	for _, tc := range []struct {
		ber     float64
		size    int
		upBy    time.Duration // the session is up within
		minT    int           // the code each direction settles on, at least
		within  time.Duration // the transfer's virtual time limit
		minRate float64       // the measured BER, at least a third of the true one
	}{
		{1e-3, 48 << 10, 5 * time.Second, 4, 2 * time.Minute, 1e-3 / 3},
		{1e-2, 16 << 10, 10 * time.Second, 16, 5 * time.Minute, 1e-2 / 3},
	} {
		synctest.Test(t, func(t *testing.T) {
			cable := newCable(Properties{LineRate: 11520}, 21)
			cable.Rate, cable.BER = 11520, tc.ber
			da, db := randomBytes(tc.size, 1), randomBytes(tc.size, 2)
			start := time.Now()
			p := startPair(t, cable, da, db, Config{})
			for p.a.Stats().Sessions.Load() == 0 || p.b.Stats().Sessions.Load() == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			up := time.Since(start)
			p.waitFor(t, len(db), len(da), tc.within)
			took := time.Since(start)
			fa, fb := p.a.FEC(), p.b.FEC()
			p.stop()
			checkSame(t, da, p.ub.got)
			checkSame(t, db, p.ua.got)
			goodput := float64(2*tc.size) / (took.Seconds() * 2 * 11520)
			t.Logf("BER %g: up after %v, both ways whole after %v (%.2f of the line each way); a sends t=%d, b sends t=%d; a measures %.2g, b %.2g; a: %s",
				tc.ber, up.Round(time.Millisecond), took.Round(time.Millisecond), goodput, fa.TOut, fb.TOut, fa.BERIn, fb.BERIn, p.a.Stats())
			assert.Less(t, up, tc.upBy, "the handshake")
			for _, f := range []FECStatus{fa, fb} {
				assert.True(t, f.Offered && f.Peer)
				assert.GreaterOrEqual(t, f.TOut, tc.minT, "the code in use")
				assert.GreaterOrEqual(t, f.BERIn, tc.minRate, "the error rate measured")
				assert.InDelta(t, f.BERIn, f.BEROut, f.BERIn, "the peer is told what it measures, roughly")
			}
			assert.NotZero(t, p.a.Stats().FECCorrected.Load())
			assert.NotZero(t, p.b.Stats().FECCorrected.Load())
		})
	}
}

// On a clean line the code goes off at once and stays off: frames go as
// they are, and the line carries what it did without the stage.
func TestFECCleanLineOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{LineRate: 11520}, 22)
		cable.Rate = 11520
		da := randomBytes(64<<10, 3)
		start := time.Now()
		p := startPair(t, cable, da, nil, Config{})
		p.waitFor(t, 0, len(da), time.Minute)
		took := time.Since(start)
		fa, fb := p.a.FEC(), p.b.FEC()
		blocks := p.b.Stats().FECBlocksIn.Load()
		p.stop()
		checkSame(t, da, p.ub.got)
		goodput := float64(len(da)) / (took.Seconds() * 11520)
		t.Logf("clean: %.3f of the line, %d blocks read by b", goodput, blocks)
		assert.Zero(t, fa.LevelOut)
		assert.Zero(t, fb.LevelOut)
		assert.Less(t, blocks, uint64(24), "the handshake's, and those of the first frames before the peer said off")
		assert.Greater(t, goodput, 0.95)
	})
}

// A peer without the code (FEC off, or from before it) links at once and
// gets everything; the end that has it turns its writer off.
func TestFECPeerWithout(t *testing.T) {
	for _, ber := range []float64{0, 1e-4} {
		synctest.Test(t, func(t *testing.T) {
			cable := newCable(Properties{LineRate: 11520}, 23)
			cable.Rate, cable.BER = 11520, ber
			da, db := randomBytes(16<<10, 4), randomBytes(16<<10, 5)
			start := time.Now()
			p := startPairConfigs(t, cable, da, db, Config{}, Config{FEC: FECOff})
			p.waitFor(t, len(db), len(da), 2*time.Minute)
			took := time.Since(start)
			fa, fb := p.a.FEC(), p.b.FEC()
			p.stop()
			checkSame(t, da, p.ub.got)
			checkSame(t, db, p.ua.got)
			t.Logf("BER %g: whole after %v", ber, took.Round(time.Millisecond))
			assert.True(t, fa.Offered)
			assert.False(t, fa.Peer)
			assert.Zero(t, fa.LevelOut)
			assert.False(t, fb.Offered)
			assert.Less(t, took, time.Minute)
		})
	}
}

// The two ends may read different codeword lengths: each writes in the
// length the other reads.
func TestFECBlockLengths(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{LineRate: 11520}, 24)
		cable.Rate, cable.BER = 11520, 1e-3
		da, db := randomBytes(16<<10, 6), randomBytes(16<<10, 7)
		p := startPairConfigs(t, cable, da, db, Config{FECBlock: 64}, Config{FECBlock: 200})
		p.waitFor(t, len(db), len(da), 3*time.Minute)
		fa, fb := p.a.FEC(), p.b.FEC()
		p.stop()
		checkSame(t, da, p.ub.got)
		checkSame(t, db, p.ua.got)
		assert.Equal(t, 200, fa.Block, "a writes what b reads")
		assert.Equal(t, 64, fb.Block, "b writes what a reads")
		assert.NotZero(t, fa.TOut)
		assert.NotZero(t, fb.TOut)
	})
}

// TCP and other reliable transports never use the code; FECOff turns it
// off on lines; bad block lengths are refused.
func TestFECOffered(t *testing.T) {
	line, tcp := Properties{LineRate: 11520}, Properties{Reliable: true}
	for _, tc := range []struct {
		props Properties
		cfg   Config
		want  int
	}{
		{line, Config{}, fec.DefaultBlock},
		{Properties{LineRate: 960}, Config{}, fecSlowBlock},
		{line, Config{FECBlock: 100}, 100},
		{line, Config{FEC: FECOff}, 0},
		{tcp, Config{}, 0},
	} {
		l := New(newCable(tc.props, 1).end(0), &byteUpper{}, tc.cfg)
		assert.Equal(t, tc.want, l.fecBlock(), "%+v %+v", tc.props, tc.cfg)
	}
	for _, n := range []int{1, fec.MinBlock - 1, fec.DefaultBlock + 1, -5} {
		assert.Error(t, Config{FECBlock: n}.Verify(), "FECBlock %d", n)
	}
	assert.Error(t, Config{FEC: FECMode(7)}.Verify())
	m, err := ParseFEC("OFF")
	require.NoError(t, err)
	assert.Equal(t, FECOff, m)
	_, err = ParseFEC("on")
	assert.ErrorContains(t, err, "want auto or off")
}

// A hostile or broken peer's FEC frames are checked: a level beyond the
// table or invalid for the block length is ignored, and a hello that
// offers an impossible block length is taken as no offer.
func TestFECHostileFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{LineRate: 11520}, 25)
		cable.Rate = 11520
		cfgB := Config{FECBlock: 32} // t = 8 at most (4t ≤ n)
		p := startPairConfigs(t, cable, nil, nil, Config{}, cfgB)
		deadline := time.Now().Add(time.Minute)
		for p.a.State() != StateUp || p.b.State() != StateUp || p.b.FEC().LevelOut != 0 {
			require.True(t, time.Now().Before(deadline), "not up and settled within a minute")
			time.Sleep(time.Millisecond)
		}
		c := p.a.cur
		p.a.mu.Lock()
		before := c.fec.txLevel
		for _, body := range [][]byte{
			{frameFEC, byte(fec.MaxLevel + 1), 0, 0},
			{frameFEC, 200, 0, 0},
			{frameFEC, 7}, // too short
		} {
			c.onFECFrame(body)
		}
		c.fec.txBlock = 32
		c.onFECFrame([]byte{frameFEC, 7, 0, 9}) // t = 16 > 32/4
		after := c.fec.txLevel
		c.onFECFrame([]byte{frameFEC, 5, 0, 9})
		valid := c.fec.txLevel
		p.a.mu.Unlock()
		p.stop()
		assert.Equal(t, before, after, "invalid levels ignored")
		assert.Equal(t, 5, valid)

		for _, ext := range [][]byte{
			{extFECBlock, 1, 5},                             // below MinBlock
			{extFECBlock, 2, 0x80, 0x04},                    // 512
			{extFECBlock, 3, 0xff, 0xff, 0xff},              // malformed uvarint
			binary.AppendUvarint([]byte{extFECBlock, 1}, 0), // zero
		} {
			assert.Zero(t, fecHelloBlock(&hello{Flags: helloFEC, Ext: ext}), "%x", ext)
		}
		assert.Equal(t, fec.DefaultBlock, fecHelloBlock(&hello{Flags: helloFEC}))
		assert.Equal(t, 64, fecHelloBlock(&hello{Flags: helloFEC, Ext: appendHelloExt(nil, nil, "", 64)}))
		assert.Zero(t, fecHelloBlock(&hello{Ext: appendHelloExt(nil, nil, "", 64)}), "no flag, no FEC")
	})
}

// Across an unplug the session resumes on a new transport, whose stage
// starts again at the hello level and settles: nothing lost.
func TestFECResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{LineRate: 11520}, 26)
		cable.Rate, cable.BER = 11520, 1e-3
		da := randomBytes(64<<10, 8)
		p := startPair(t, cable, da, nil, Config{})
		for p.ub.received() < len(da)/3 {
			time.Sleep(10 * time.Millisecond)
		}
		cable.Cut()
		p.waitFor(t, 0, len(da), 3*time.Minute)
		resumes := p.a.Stats().Resumes.Load()
		p.stop()
		checkSame(t, da, p.ub.got)
		assert.NotZero(t, resumes)
	})
}
