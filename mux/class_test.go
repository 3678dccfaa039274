package mux

import (
	"testing"
	"time"

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

// Bulk data goes as ClassBulkQuiet once no stream whose data went out as
// interactive can send more: each closed its side, or turned bulk. While
// one can, it is ClassBulk and the link's interactive spell runs its time.
func TestFillClassQuiet(t *testing.T) {
	buf := make([]byte, 1024)
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, s *Stream)
	}{
		{"closed for writing", func(t *testing.T, s *Stream) { require.NoError(t, s.CloseWrite()) }},
		{"closed", func(t *testing.T, s *Stream) { require.NoError(t, s.Close()) }},
		{"turned bulk", func(t *testing.T, s *Stream) {
			go func() { _, _ = s.Write(make([]byte, 64<<10)) }()
			require.Eventually(t, func() bool {
				s.m.mu.Lock()
				defer s.m.mu.Unlock()
				return s.bulk
			}, 5*time.Second, time.Millisecond)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := overtakePair(t)
			s, err := a.Open(ctx(t), Info{})
			require.NoError(t, err)
			require.NoError(t, b.Deliver(buf[:fillN(a, buf)])) // the OPEN
			writeUrgent(t, a, s, "k")
			n, class := a.Fill(buf, len(buf))
			require.Equal(t, link.ClassInteractive, class, "the keystroke")
			require.NoError(t, b.Deliver(buf[:n]))

			busyStream(t, a, b)
			n, class = a.Fill(buf, len(buf))
			require.Positive(t, n)
			require.Equal(t, link.ClassBulk, class, "bulk data while the talking stream may send more")
			require.NoError(t, b.Deliver(buf[:n]))

			tc.end(t, s)
			quiet := false
			for range 100 {
				n, class = a.Fill(buf, len(buf))
				require.Positive(t, n)
				require.NoError(t, b.Deliver(buf[:n]))
				if class == link.ClassBulkQuiet {
					quiet = true
					break
				}
			}
			require.True(t, quiet, "bulk data once the talking stream cannot send more")
			a.mu.Lock()
			defer a.mu.Unlock()
			require.Empty(t, a.talkers)
			require.False(t, s.talker)
		})
	}
}

// The set of streams that talked answers from its last entry, drops the
// ones that cannot send more as it meets them, and loses a stream the
// table forgets at once, wherever it stands.
func TestTalkersSet(t *testing.T) {
	a, _ := overtakePair(t)
	var ss []*Stream
	for range 4 {
		s, err := a.Open(ctx(t), Info{})
		require.NoError(t, err)
		ss = append(ss, s)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range ss {
		a.addTalker(s)
		a.addTalker(s) // once only
	}
	require.Len(t, a.talkers, 4)
	ss[3].bulk, ss[0].bulk = true, true
	require.True(t, a.talking(), "streams 1 and 2 may still talk")
	require.Equal(t, []*Stream{ss[0], ss[1], ss[2]}, a.talkers, "the bulk one at the end dropped")
	a.forget(ss[1])
	require.Equal(t, []*Stream{ss[0], ss[2]}, a.talkers, "forgotten: the last took its place")
	require.Equal(t, 1, ss[2].talkerAt)
	require.False(t, ss[1].talker)
	ss[2].bulk = true
	require.False(t, a.talking(), "none can talk")
	require.Empty(t, a.talkers)
	for _, s := range ss {
		require.False(t, s.talker)
	}
}
