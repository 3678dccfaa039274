package link

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSetLineRateMidTransfer switches both ends' line rate in the middle
// of a transfer both ways, the line garbling everything for a moment as
// a speed switch does: the transfer completes intact in the one session,
// and the link reports the new rate.
func TestSetLineRateMidTransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{LineRate: 11520}, 5)
		cable.Rate = 92160
		var garble atomic.Bool
		cable.Tamper = func(_ int, b []byte) []byte {
			if !garble.Load() {
				return b
			}
			out := make([]byte, len(b))
			for i := range out {
				out[i] = byte(i*131 + 7)
			}
			return out
		}
		da, db := randomBytes(96<<10, 11), randomBytes(96<<10, 12)
		p := startPair(t, cable, da, db, Config{})
		time.Sleep(3 * time.Second)
		garble.Store(true)
		require.NoError(t, p.a.SetLineRate(92160))
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, p.b.SetLineRate(92160))
		time.Sleep(150 * time.Millisecond)
		garble.Store(false)
		p.waitFor(t, len(db), len(da), 5*time.Minute)
		p.stop()
		p.checkGot(t, da, db)
		assert.Equal(t, uint64(1), p.a.Stats().Sessions.Load(), "one session")
		assert.Equal(t, 92160, p.a.Properties().LineRate)
		assert.Equal(t, 92160, p.a.sender.lineRate)
		assert.Error(t, p.a.SetLineRate(0))
	})
	cable := newCable(Properties{Reliable: true}, 1)
	l := New(cable.end(0), &byteUpper{}, Config{Logger: quietLogger()})
	assert.ErrorContains(t, l.SetLineRate(1000), "not a paced line")
}
