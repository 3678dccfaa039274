package link

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveBoth runs one transport of two links to its end and returns each
// end's error.
func serveBoth(t *testing.T, ca, cb Config) (a, b *Link, errA, errB error) {
	t.Helper()
	cable := newCable(Properties{Reliable: true}, 21)
	ca.Logger, cb.Logger = quietLogger(), quietLogger()
	a = New(cable.end(0), &byteUpper{send: []byte("x")}, ca)
	b = New(cable.end(1), &byteUpper{}, cb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ta, err := cable.end(0).Open(ctx)
	require.NoError(t, err)
	tb, err := cable.end(1).Open(ctx)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); errA = a.serve(ctx, ta) }()
	go func() { defer wg.Done(); errB = b.serve(ctx, tb) }()
	wg.Wait()
	return a, b, errA, errB
}

func TestNameRefused(t *testing.T) {
	for _, tc := range []struct{ name, give, want string }{
		{"another name", "board-2", `the peer calls itself "board-2"; this end serves the peer "board-1"`},
		{"no name", "", `the peer gives no name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, _, errA, errB := serveBoth(t,
					Config{Secret: key(3), Name: tc.give},
					Config{Secret: key(3), PeerName: "board-1"})
				var ne *NameError
				require.ErrorAs(t, errB, &ne)
				assert.Contains(t, errB.Error(), tc.want)
				// The connecting end is told why, in the clear.
				require.Error(t, errA)
				assert.Contains(t, errA.Error(), "the peer refused us: "+tc.want)
			})
		})
	}
}

func TestNameAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{Reliable: true}, 22)
		p := startPairConfigs(t, cable, []byte("to b"), []byte("to a"),
			Config{Secret: key(4), Name: "Board-1"},
			Config{Secret: key(4), PeerName: "board-1"})
		p.waitFor(t, 4, 4, time.Minute)
		assert.Equal(t, "Board-1", p.b.PeerName())
		assert.Equal(t, "", p.a.PeerName())
		p.stop()
	})
}

// A name swapped on the way (its CRC fixed up) breaks the key proof: the
// name is bound into the handshake with the rest of the hello.
func TestNameBoundIntoKeyProof(t *testing.T) {
	h := hello{Version: ProtocolVersion, Session: 9, MaxPayload: MinPayload, Ext: appendHelloExt(nil, nil, "board-1", 0)}
	swapped := h
	swapped.Ext = appendHelloExt(nil, nil, "board-2", 0)
	assert.NotEqual(t, canonicalHello(h), canonicalHello(swapped))
	assert.NotEqual(t, prologue(canonicalHello(h), nil), prologue(canonicalHello(swapped), nil))
}

func TestReadHello(t *testing.T) {
	h := hello{Version: ProtocolVersion, Flags: helloAuth, Session: 5, MaxPayload: MinPayload, Ext: appendHelloExt(nil, []string{"test-link"}, "cab-17", 0)}
	wire := append([]byte{0, 0x55, 0x66, 0}, encodeFrame(nil, h.marshal(nil))...)
	wire = append(wire, "after"...)
	got, read, err := ReadHello(bytes.NewReader(wire))
	require.NoError(t, err)
	assert.Equal(t, Hello{Name: "cab-17", Auth: true}, got)
	assert.True(t, bytes.HasPrefix(wire, read))

	_, _, err = ReadHello(bytes.NewReader([]byte("GET / HTTP/1.1\r\n\r\n")))
	assert.ErrorContains(t, err, "EOF")
	_, _, err = ReadHello(bytes.NewReader(bytes.Repeat([]byte{1}, 5000)))
	assert.ErrorContains(t, err, "no sockmux hello")
	notHello := encodeFrame(nil, []byte{framePing, 0, 0, 0, 1})
	_, _, err = ReadHello(bytes.NewReader(notHello))
	assert.True(t, errors.Is(err, errNotHello), "%v", err)
}

func TestRefusalIsAnAuthFailure(t *testing.T) {
	fr := newFrameReader(bytes.NewReader(Refusal("unknown peer")), 1024, func(error) {}, func(int) {})
	body, err := fr.next()
	require.NoError(t, err)
	assert.Equal(t, append([]byte{frameAuth, authFail}, "unknown peer"...), body)
}

func TestSetSecret(t *testing.T) {
	l := New(newCable(Properties{Reliable: true}, 1).end(0), &byteUpper{}, Config{Secret: key(1)})
	require.NoError(t, l.SetSecret(key(2)))
	assert.Equal(t, key(2), l.Config().Secret)
	assert.Error(t, l.SetSecret(nil))
	plain := New(newCable(Properties{Reliable: true}, 1).end(0), &byteUpper{}, Config{})
	assert.Error(t, plain.SetSecret(key(2)))
}

func FuzzReadHello(f *testing.F) {
	h := hello{Version: ProtocolVersion, Session: 5, MaxPayload: MinPayload, Ext: appendHelloExt(nil, nil, "x", 0)}
	f.Add(encodeFrame(nil, h.marshal(nil)))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, read, _ := ReadHello(bytes.NewReader(b))
		if !bytes.HasPrefix(b, read) {
			t.Fatal("read bytes not a prefix")
		}
	})
}
