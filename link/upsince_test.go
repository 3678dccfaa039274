package link

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUpSinceIsWhenTheLinkLastCameUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{Reliable: true}, 3)
		cable.Rate = 50 << 20
		p := startPair(t, cable, nil, nil, Config{})
		defer p.stop()
		assert.True(t, p.a.UpSince().IsZero(), "not up before the handshake")
		for p.a.State() != StateUp {
			time.Sleep(time.Millisecond)
		}
		first := p.a.UpSince()
		require.False(t, first.IsZero())
		assert.False(t, first.After(time.Now()))

		time.Sleep(5 * time.Second)
		cable.Cut()
		for p.a.Stats().Resumes.Load() < 1 || p.a.State() != StateUp {
			time.Sleep(time.Millisecond)
		}
		again := p.a.UpSince()
		assert.GreaterOrEqual(t, again.Sub(first), 5*time.Second, "up since the resume, not the first handshake")
	})
}
