package link

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sockmux/sockmux/internal/memline"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cableT is a memline cable whose ends are drivers with given properties.
type cableT struct {
	*memline.Cable
	props Properties
}

func newCable(props Properties, seed uint64) *cableT {
	return &cableT{Cable: memline.New(seed), props: props}
}

// end returns side 0 or 1 as a Driver.
func (c *cableT) end(side int) Driver { return memDriver{c.End(side), c.props} }

type memDriver struct {
	*memline.End
	props Properties
}

func (d memDriver) Properties() Properties { return d.props }

// byteUpper is a test upper layer: it sends a fixed buffer as a byte
// stream and records what it receives.
type byteUpper struct {
	mu      sync.Mutex
	send    []byte
	got     []byte
	starts  []SessionInfo
	ends    []error
	maxFill int
}

func (u *byteUpper) SessionStart(s SessionInfo) {
	u.mu.Lock()
	u.starts = append(u.starts, s)
	u.mu.Unlock()
}

func (u *byteUpper) SessionEnd(reason error) {
	u.mu.Lock()
	u.ends = append(u.ends, reason)
	u.mu.Unlock()
}

func (u *byteUpper) Fill(p []byte, budget int) (int, Class) {
	u.mu.Lock()
	defer u.mu.Unlock()
	p = p[:budget]
	if u.maxFill > 0 && len(p) > u.maxFill {
		p = p[:u.maxFill]
	}
	n := copy(p, u.send)
	u.send = u.send[n:]
	return n, ClassBulk
}

func (u *byteUpper) Deliver(p []byte) error {
	u.mu.Lock()
	u.got = append(u.got, p...)
	u.mu.Unlock()
	return nil
}

func (u *byteUpper) received() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.got)
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

type pairRun struct {
	a, b   *Link
	ua, ub *byteUpper
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startPair runs a pair of links with the same configuration on cable's
// two ends, side a sending dataA and side b dataB.
func startPair(t *testing.T, cable *cableT, dataA, dataB []byte, cfg Config) *pairRun {
	t.Helper()
	return startPairConfigs(t, cable, dataA, dataB, cfg, cfg)
}

// startPairConfigs is startPair with a configuration for each side; both
// log nowhere.
func startPairConfigs(t *testing.T, cable *cableT, dataA, dataB []byte, cfgA, cfgB Config) *pairRun {
	t.Helper()
	cfgA.Logger, cfgB.Logger = quietLogger(), quietLogger()
	if cable.Tamper != nil {
		// A Tamper reads and rewrites the COBS frames on the line, which
		// FEC blocks would hide from it: tests that tamper run without
		// the code (fec_test.go tests it).
		cfgA.FEC, cfgB.FEC = FECOff, FECOff
	}
	p := &pairRun{ua: &byteUpper{send: dataA}, ub: &byteUpper{send: dataB}}
	p.a = New(cable.end(0), p.ua, cfgA)
	p.b = New(cable.end(1), p.ub, cfgB)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	for _, l := range []*Link{p.a, p.b} {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); _ = l.Run(ctx) }()
	}
	return p
}

func (p *pairRun) stop() { p.cancel(); p.wg.Wait() }

// cutWhileReceiving cuts cable cuts times, evenly while a receives the
// first size bytes, each time once a has resumed after the cut before.
func (p *pairRun) cutWhileReceiving(cable *cableT, size, cuts int) {
	for i := range cuts {
		for p.ua.received() < (i+1)*size/(cuts+2) {
			time.Sleep(time.Millisecond)
		}
		cable.Cut()
		for p.a.Stats().Resumes.Load() < uint64(i+1) {
			time.Sleep(time.Millisecond)
		}
	}
}

func (p *pairRun) waitFor(t *testing.T, na, nb int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for p.ua.received() < na || p.ub.received() < nb {
		if time.Now().After(deadline) {
			p.stop()
			t.Fatalf("timed out: a got %d/%d, b got %d/%d; a %s; b %s", p.ua.received(), na, p.ub.received(), nb,
				p.a.Stats(), p.b.Stats())
		}
		p.a.Notify()
		p.b.Notify()
		time.Sleep(10 * time.Millisecond)
	}
}

func checkSame(t *testing.T, want, got []byte) {
	t.Helper()
	require.Equal(t, len(want), len(got), "length")
	require.Equal(t, sha256.Sum256(want), sha256.Sum256(got), "sha256")
}

// checkGot checks that b received dataA and a received dataB.
func (p *pairRun) checkGot(t *testing.T, dataA, dataB []byte) {
	t.Helper()
	checkSame(t, dataA, p.ub.got)
	checkSame(t, dataB, p.ua.got)
}

// replaceB runs a new link, sending "again", in place of b (which has
// gone) until a has received aWants bytes in all; then it stops that link
// and the pair.
func (p *pairRun) replaceB(cable *cableT, aWants int) {
	ctxB, cancelB := context.WithCancel(context.Background())
	ub2 := &byteUpper{send: []byte("again")}
	b2 := New(cable.end(1), ub2, Config{Logger: quietLogger()})
	done := make(chan struct{})
	go func() { defer close(done); _ = b2.Run(ctxB) }()
	for p.ua.received() < aWants {
		p.a.Notify()
		time.Sleep(10 * time.Millisecond)
	}
	cancelB()
	<-done
	p.stop()
}

func TestTransferReliable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{Reliable: true}, 1)
		da, db := randomBytes(1<<20, 1), randomBytes(1<<20, 2)
		p := startPair(t, cable, da, db, Config{})
		p.waitFor(t, len(db), len(da), time.Minute)
		p.stop()
		p.checkGot(t, da, db)
		assert.Equal(t, uint64(0), p.a.Stats().FramesResent.Load())
	})
}

func TestTransferNoisySerial(t *testing.T) {
	for _, tc := range []struct {
		name           string
		ber, drop, ins float64
	}{
		{"ber1e-5", 1e-5, 0, 0},
		{"ber1e-4", 1e-4, 0, 0},
		{"ber1e-3", 1e-3, 0, 0},
		{"drop", 0, 1e-4, 0},
		{"insert", 0, 0, 1e-3},
		{"everything", 1e-4, 1e-4, 1e-4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cable := newCable(Properties{LineRate: 11520}, 7)
				cable.Rate = 11520
				cable.BER, cable.Drop, cable.Insert = tc.ber, tc.drop, tc.ins
				da, db := randomBytes(64<<10, 3), randomBytes(64<<10, 4)
				p := startPair(t, cable, da, db, Config{})
				p.waitFor(t, len(db), len(da), 10*time.Minute)
				p.stop()
				p.checkGot(t, da, db)
				assert.Equal(t, uint64(1), p.a.Stats().Sessions.Load(), "one session, never restarted")
				if tc.ber >= 1e-4 || tc.drop > 0 || tc.ins > 0 {
					// Seen as damaged frames, or repaired by the FEC stage.
					seen := func(l *Link) uint64 {
						st := l.Stats()
						return st.FramesBad.Load() + st.FECCorrected.Load() + st.FECUncorrectable.Load()
					}
					assert.NotZero(t, seen(p.a)+seen(p.b), "faults were injected")
				}
			})
		})
	}
}

func TestResumeAfterCuts(t *testing.T) {
	for _, props := range []Properties{{Reliable: true}, {LineRate: 11520}} {
		t.Run(map[bool]string{true: "reliable", false: "serial"}[props.Reliable], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cable := newCable(props, 3)
				cable.Rate = props.LineRate
				if props.Reliable {
					cable.Rate = 50 << 20
				}
				size := 4 << 20
				if props.LineRate > 0 {
					size = 96 << 10
				}
				da, db := randomBytes(size, 5), randomBytes(size, 6)
				p := startPair(t, cable, da, db, Config{})
				p.cutWhileReceiving(cable, size, 5)
				p.waitFor(t, len(db), len(da), 10*time.Minute)
				p.stop()
				p.checkGot(t, da, db)
				assert.Equal(t, uint64(1), p.a.Stats().Sessions.Load())
				assert.GreaterOrEqual(t, p.a.Stats().Resumes.Load(), uint64(5))
				assert.Empty(t, p.ua.ends)
			})
		})
	}
}

func TestPeerRestartEndsSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{Reliable: true}, 4)
		p := startPair(t, cable, []byte("hello"), []byte("world"), Config{})
		p.waitFor(t, 5, 5, time.Minute)

		// Stop b, and start a new process in its place.
		p.b.Close("test restart", time.Second)
		p.replaceB(cable, 10)
		require.Len(t, p.ua.ends, 1, "a was told the old session ended, once")
		// Usually by b's CLOSE; when the in-memory cable's teardown wins
		// the race with it, by b2's new session id. Either way the old
		// streams end with a reason.
		var closed *PeerClosedError
		var restarted *PeerRestartedError
		assert.True(t, errors.As(p.ua.ends[0], &closed) || errors.As(p.ua.ends[0], &restarted), "%v", p.ua.ends[0])
		assert.Equal(t, "worldagain", string(p.ua.got))
	})
}

func TestPeerCrashEndsSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{Reliable: true}, 5)
		p := startPair(t, cable, []byte("hello"), []byte("world"), Config{})
		p.waitFor(t, 5, 5, time.Minute)
		// b dies without a word: its transport just breaks.
		bCancel := p.b.cancel
		bCancel()
		<-p.b.done
		p.replaceB(cable, 10)
		require.Len(t, p.ua.ends, 1)
		assert.ErrorIs(t, p.ua.ends[0], error(&PeerRestartedError{}))
	})
}

func TestNotSockmuxPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{Reliable: true}, 6)
		u := &byteUpper{}
		l := New(cable.end(0), u, Config{Logger: quietLogger(), HandshakeTimeout: 2 * time.Second})
		tr, err := cable.end(1).Open(context.Background())
		require.NoError(t, err)
		go func() {
			r := rand.New(rand.NewPCG(1, 1))
			buf := make([]byte, 100)
			for {
				for i := range buf {
					buf[i] = byte(r.UintN(256))
				}
				if _, err := tr.Write(buf); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		go func() { _, _ = io.Copy(io.Discard, tr) }()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		t0, err := cable.end(0).Open(ctx)
		require.NoError(t, err)
		err = l.serve(ctx, t0)
		require.NoError(t, tr.Close())
		time.Sleep(time.Second) // the noise maker notices and stops
		var he *HandshakeError
		require.ErrorAs(t, err, &he)
		assert.Contains(t, err.Error(), "not sockmux frames")
		assert.Empty(t, u.starts)
	})
}

func TestCOBSRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	cases := [][]byte{{}, {0}, {0, 0}, {1}, bytes.Repeat([]byte{0}, 300)}
	for _, n := range []int{253, 254, 255, 256, 507, 508, 509, 1000, 70000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(1 + r.UintN(255))
		}
		cases = append(cases, b)
		z := append([]byte(nil), b...)
		z[n/2] = 0
		cases = append(cases, z, append(b, 0))
	}
	all := make([]byte, 256*4)
	for i := range all {
		all[i] = byte(i)
	}
	cases = append(cases, all)
	for _, c := range cases {
		enc := cobsEncode(nil, c)
		assert.NotContains(t, enc, byte(0))
		assert.LessOrEqual(t, len(enc), cobsMaxEncoded(len(c)))
		dec, err := cobsDecode(nil, enc)
		require.NoError(t, err)
		assert.Equal(t, len(c), len(dec))
		assert.True(t, bytes.Equal(c, dec))
	}
}

func TestFrameReaderResync(t *testing.T) {
	var stream []byte
	frame := func(payload string) []byte {
		f := append([]byte{frameData, 0, 1, 0, 0}, payload...)
		return encodeFrame(nil, f)
	}
	stream = append(stream, "garbage without delimiter"...)
	stream = append(stream, 0)
	stream = append(stream, frame("one")...)
	cut := frame("truncated")
	stream = append(stream, cut[:len(cut)-4]...) // lost its end...
	stream = append(stream, frame("two")...)     // ...so two is glued to it
	stream = append(stream, frame("three")...)
	bad := frame("flipped")
	bad[3] ^= 0x10
	stream = append(stream, bad...)
	stream = append(stream, bytes.Repeat([]byte{0x55}, 5000)...) // too long
	stream = append(stream, 0)
	stream = append(stream, frame("four")...)
	var bads int
	fr := newFrameReader(bytes.NewReader(stream), 1000, func(error) { bads++ }, func(int) {})
	var got []string
	for {
		body, err := fr.next()
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		got = append(got, string(body[dataHeader:]))
	}
	assert.Equal(t, []string{"one", "three", "four"}, got)
	assert.Equal(t, 4, bads) // garbage, truncated+two, flipped, too long
}

func TestHelloRoundTrip(t *testing.T) {
	h := hello{Version: ProtocolVersion, Flags: helloDone, Session: 1, PeerPrev: 2, Echo: 3, RxNext: 4, MaxPayload: MinPayload, Window: 6, Ext: []byte{7}}
	body := h.marshal(nil)
	got, err := parseHello(body)
	require.NoError(t, err)
	assert.Equal(t, h, *got)
	body[5] = 9
	_, err = parseHello(body)
	var ve *VersionError
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, err.Error(), "version 9")
	_, err = parseHello([]byte{frameHello, 'H', 'T', 'T', 'P'})
	assert.ErrorIs(t, err, errNotSockmux)
	h.MaxPayload = MinPayload - 1
	_, err = parseHello(h.marshal(nil))
	assert.ErrorIs(t, err, errPeerPayload, "a peer that takes less than MinPayload cannot carry every message whole")
}
