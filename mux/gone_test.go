package mux

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sockmux/sockmux/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A session the link gave up (its far end is gone) resets its streams with
// the reason, and new streams are turned away at once with it, not after
// the caller's wait, until a new session starts.
func TestGoneSessionTurnsOpensAway(t *testing.T) {
	m := New(Config{Logger: quiet()})
	m.SessionStart(link.SessionInfo{Local: 2, Peer: 1})
	s, err := m.Open(context.Background(), Info{Dest: "host:1"})
	require.NoError(t, err)

	m.SessionEnd(&link.GoneError{Reason: "connection refused"})
	_, err = s.Read(make([]byte, 1))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "far end is gone: connection refused")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err = m.Open(ctx, Info{Dest: "host:1"})
	var gone *link.GoneError
	require.ErrorAs(t, err, &gone)
	assert.Less(t, time.Since(start), time.Second, "refused at once")

	// Any other end of a session still waits for the next one.
	m.SessionStart(link.SessionInfo{Local: 2, Peer: 3})
	_, err = m.Open(ctx, Info{Dest: "host:1"})
	require.NoError(t, err)
	m.SessionEnd(errors.New("peer restarted"))
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	_, err = m.Open(short, Info{Dest: "host:1"})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
