package forward

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/mux"
)

func mustForward(t *testing.T, kind Kind, spec string) Forward {
	t.Helper()
	fw, err := ParseForward(kind, spec)
	require.NoError(t, err)
	return fw
}

// expectClosed checks that nothing listens at addr any more.
func expectClosed(t *testing.T, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}, 5*time.Second, 10*time.Millisecond, "%s still listens", addr)
}

// Apply adds and removes local and remote forwards and replaces the exit
// rules; a forward that stays keeps its listener and its connections, and
// a connection under way through a removed forward goes on.
func TestApplyAddsAndRemovesForwards(t *testing.T) {
	one := echoServer(t, "tcp4", "one")
	two := echoServer(t, "tcp4", "two")
	a, b := linkedPair(t, Config{}, Config{})
	kept := mustForward(t, Local, portText(free(t, "tcp"))+":"+one)
	dropped := mustForward(t, Local, portText(free(t, "tcp"))+":"+one)
	droppedR := mustForward(t, Remote, portText(free(t, "tcp"))+":"+one)
	for _, fw := range []Forward{kept, dropped, droppedR} {
		require.NoError(t, a.f.Add(fw))
	}
	b.log.waitFor(t, "listening for the far end's remote forward")
	keptConn, err := net.Dial("tcp", kept.Bind)
	require.NoError(t, err)
	defer keptConn.Close()
	roundTrip(t, keptConn, "one")
	droppedConn, err := net.Dial("tcp", dropped.Bind)
	require.NoError(t, err)
	defer droppedConn.Close()
	roundTrip(t, droppedConn, "one")

	added := mustForward(t, Local, portText(free(t, "tcp"))+":"+two)
	addedR := mustForward(t, Remote, portText(free(t, "tcp"))+":"+two)
	ch, err := a.f.Apply([]Forward{added, kept, addedR}, nil)
	require.NoError(t, err)
	assert.Equal(t, []Forward{added, addedR}, ch.Added)
	assert.Equal(t, []Forward{dropped, droppedR}, ch.Removed)
	assert.False(t, ch.RulesChanged)
	assert.Equal(t, []Forward{added, kept, addedR}, a.f.Forwards())

	expectClosed(t, dropped.Bind)
	expectClosed(t, droppedR.Bind)
	b.log.waitFor(t, "closed the listener of the far end's removed remote forward")
	b.log.waitFor(t, "listening for the far end's remote forward\" listen="+addedR.Bind)
	for addr, want := range map[string]string{added.Bind: "two", addedR.Bind: "two", kept.Bind: "one"} {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		roundTrip(t, c, want)
		c.Close()
	}
	// The connections made before go on, both through the kept forward
	// and through the removed one.
	roundTrip(t, keptConn, "")
	roundTrip(t, droppedConn, "")

	// The same set again changes nothing.
	ch, err = a.f.Apply([]Forward{added, kept, addedR}, nil)
	require.NoError(t, err)
	assert.True(t, ch.Empty(), "%v", ch)
}

// A remote forward whose destination changes keeps the far end's
// listener; a port moves from one local forward to another in one Apply;
// a port in use is reported and the rest applied.
func TestApplyRetargetsAndMovesPorts(t *testing.T) {
	one := echoServer(t, "tcp4", "one")
	two := echoServer(t, "tcp4", "two")
	a, b := linkedPair(t, Config{}, Config{})
	rport := portText(free(t, "tcp"))
	r1 := mustForward(t, Remote, rport+":"+one)
	lport := portText(free(t, "tcp"))
	l1 := mustForward(t, Local, lport+":"+one)
	require.NoError(t, a.f.Add(r1))
	require.NoError(t, a.f.Add(l1))
	b.log.waitFor(t, "listening for the far end's remote forward")

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	r2 := mustForward(t, Remote, rport+":"+two)
	l2 := mustForward(t, Local, lport+":"+two)
	inUse := mustForward(t, Local, portText(busy.Addr().String())+":"+two)
	ch, err := a.f.Apply([]Forward{r2, l2, inUse}, rules(t, two))
	require.Error(t, err)
	assert.Contains(t, err.Error(), inUse.String())
	assert.Equal(t, []Forward{r2}, ch.Retargeted)
	assert.Equal(t, []Forward{l2}, ch.Added)
	assert.Equal(t, []Forward{l1}, ch.Removed)
	assert.True(t, ch.RulesChanged)
	assert.Equal(t, []Forward{r2, l2}, a.f.Forwards())
	assert.Len(t, a.f.Rules(), 1)
	for _, addr := range []string{r1.Bind, l1.Bind} {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		roundTrip(t, c, "two")
		c.Close()
	}
	assert.Equal(t, 1, strings.Count(b.log.String(), "listening for the far end's remote forward"), "the far end's listener stayed")

	// Once the port is free, applying the same set again starts it.
	busy.Close()
	ch, err = a.f.Apply([]Forward{r2, l2, inUse}, rules(t, two))
	require.NoError(t, err)
	assert.Equal(t, []Forward{inUse}, ch.Added)
	assert.False(t, ch.RulesChanged)
}

// A stream that arrives with the tag of a withdrawn remote forward (its
// far end still listening, as one that predates closing listeners would)
// is refused, not routed by the rules.
func TestWithdrawnRemoteTagIsRefused(t *testing.T) {
	one := echoServer(t, "tcp4", "one")
	a, _ := linkedPair(t, Config{Rules: rules(t, one)}, Config{})
	r := mustForward(t, Remote, portText(free(t, "tcp"))+":"+one)
	require.NoError(t, a.f.Add(r))
	_, err := a.f.Apply(nil, rules(t, one))
	require.NoError(t, err)
	_, err = a.f.DefaultRoute(muxInfo(1))
	var nr *NoRouteError
	require.ErrorAs(t, err, &nr)
	// Tag 0 (no remote forward) still goes by the rules.
	tg, err := a.f.DefaultRoute(muxInfo(0))
	require.NoError(t, err)
	assert.Equal(t, one, tg.Dest)
}

// Apply after Close fails and starts nothing.
func TestApplyAfterClose(t *testing.T) {
	a, _ := linkedPair(t, Config{}, Config{})
	a.f.Close()
	_, err := a.f.Apply([]Forward{mustForward(t, Local, portText(free(t, "tcp"))+":127.0.0.1:1")}, nil)
	require.Error(t, err)
	assert.Empty(t, a.f.Forwards())
}

func muxInfo(tag uint64) mux.Info {
	return mux.Info{Network: "tcp", Tag: tag, Entrance: 1, Client: "127.0.0.1:1"}
}
