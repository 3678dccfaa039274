package link

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func (u *byteUpper) endsNow() []error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]error(nil), u.ends...)
}

// A session whose peer vanished without a word ends after the resume
// timeout, not before, and a peer that comes later starts a new one.
func TestResumeTimeoutEndsSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{Reliable: true}, 6)
		p := startPair(t, cable, []byte("hello"), []byte("world"), Config{ResumeTimeout: 2 * time.Minute})
		p.waitFor(t, 5, 5, time.Minute)
		p.b.cancel() // b dies: its transport just breaks
		<-p.b.done

		time.Sleep(time.Minute)
		assert.Empty(t, p.ua.endsNow(), "within the resume timeout the session waits")
		time.Sleep(90 * time.Second)
		ends := p.ua.endsNow()
		require.Len(t, ends, 1, "after the resume timeout the session is over")
		var gone *GoneError
		require.ErrorAs(t, ends[0], &gone)
		assert.Contains(t, gone.Error(), "resume timeout")

		p.replaceB(cable, 10)
		assert.Len(t, p.ua.endsNow(), 1, "the new peer's session starts afresh, nothing more ends")
		assert.Equal(t, "worldagain", string(p.ua.got))
	})
}

// Without a resume timeout a session waits for ever.
func TestNoResumeTimeoutWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{Reliable: true}, 7)
		p := startPair(t, cable, []byte("hello"), []byte("world"), Config{})
		p.waitFor(t, 5, 5, time.Minute)
		p.b.cancel()
		<-p.b.done
		time.Sleep(time.Hour)
		assert.Empty(t, p.ua.endsNow())
		p.stop()
	})
}

// A connector whose redial is refused ends the session at once: nothing
// listens, so no process holds the session any more.
func TestRefusedRedialEndsSession(t *testing.T) {
	r, err := listenTest("127.0.0.1:0")
	require.NoError(t, err)
	addr := r.Addr().String()
	ua, ub := &byteUpper{send: []byte("hello")}, &byteUpper{send: []byte("world")}
	a := New(testDialer{addr}, ua, Config{Logger: quietLogger()}) // no resume timeout
	b := New(r, ub, Config{Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctxB, cancelB := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	go func() { defer wg.Done(); _ = b.Run(ctxB) }()
	defer wg.Wait()
	defer cancel()

	require.Eventually(t, func() bool { return ua.received() == 5 && ub.received() == 5 }, 10*time.Second, 10*time.Millisecond)
	// b's process dies: its link stops without a goodbye, its port closes.
	cancelB()
	require.NoError(t, r.Close())
	start := time.Now()
	require.Eventually(t, func() bool { return len(ua.endsNow()) == 1 }, 10*time.Second, 10*time.Millisecond)
	var gone *GoneError
	require.ErrorAs(t, ua.endsNow()[0], &gone)
	assert.Equal(t, "far end is gone: connection refused", gone.Error())
	assert.Less(t, time.Since(start), 5*time.Second, "told at the first refused redial")
}

func TestRefusedDial(t *testing.T) {
	r, err := listenTest("127.0.0.1:0")
	require.NoError(t, err)
	addr := r.Addr().String()
	require.NoError(t, r.Close())
	_, err = (testDialer{addr}).Open(context.Background())
	require.Error(t, err)
	assert.True(t, refusedDial(err), "%v", err)
	assert.False(t, refusedDial(context.DeadlineExceeded))
	assert.False(t, refusedDial(errors.New("no such host")))
}
