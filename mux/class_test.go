package mux

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/link"
)

// Fill tells the link what each payload carries: only control messages
// (an OPEN), interactive data (a keystroke-sized write), or bulk data.
func TestFillClass(t *testing.T) {
	a, b := overtakePair(t)
	buf := make([]byte, 1024)

	s, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	n, class := a.Fill(buf, len(buf))
	require.Positive(t, n)
	require.Equal(t, link.ClassControl, class, "a payload with only the OPEN")
	require.NoError(t, b.Deliver(buf[:n]))

	writeUrgent(t, a, s, "k")
	n, class = a.Fill(buf, len(buf))
	require.Positive(t, n)
	require.Equal(t, link.ClassInteractive, class, "a payload with a keystroke")
	require.NoError(t, b.Deliver(buf[:n]))

	busyStream(t, a, b) // its OPEN, then bulk data
	n, class = a.Fill(buf, len(buf))
	require.Positive(t, n)
	require.Equal(t, link.ClassBulk, class, "a payload of bulk data")

	empty, _ := overtakePair(t)
	n, class = empty.Fill(buf, len(buf))
	require.Zero(t, n)
	require.Equal(t, link.ClassBulk, class, "nothing to send")
}
