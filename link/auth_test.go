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

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

// startKeyed runs a pair whose ends hold keys ka and kb.
func startKeyed(t *testing.T, cable *cableT, ka, kb []byte, da, db []byte) *pairRun {
	t.Helper()
	return startPairConfigs(t, cable, da, db,
		Config{Secret: ka, HandshakeTimeout: 3 * time.Second},
		Config{Secret: kb, HandshakeTimeout: 3 * time.Second})
}

func TestAuthSameKey(t *testing.T) {
	for _, props := range []Properties{{Reliable: true}, {LineRate: 11520}} {
		synctest.Test(t, func(t *testing.T) {
			cable := newCable(props, 11)
			cable.Rate = props.LineRate
			if props.LineRate > 0 {
				cable.BER = 1e-5
			}
			da, db := randomBytes(48<<10, 1), randomBytes(48<<10, 2)
			p := startKeyed(t, cable, key(7), key(7), da, db)
			p.waitFor(t, len(db), len(da), 10*time.Minute)
			// A cut: the session resumes, re-authenticated with fresh keys.
			cable.Cut()
			for p.a.Stats().Resumes.Load() == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			p.stop()
			p.checkGot(t, da, db)
			assert.Equal(t, uint64(1), p.a.Stats().Sessions.Load())
		})
	}
}

func TestAuthWrongOrMissingKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ka, kb []byte
		want   string
	}{
		{"different keys", key(1), key(2), "did not verify"},
		{"only a has a key", key(1), nil, "one end has a shared secret and the other has none"},
		{"only b has a key", nil, key(2), "one end has a shared secret and the other has none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cable := newCable(Properties{Reliable: true}, 12)
				ua, ub := &byteUpper{send: []byte("secret data")}, &byteUpper{}
				a := New(cable.end(0), ua, Config{Secret: tc.ka, Logger: quietLogger()})
				b := New(cable.end(1), ub, Config{Secret: tc.kb, Logger: quietLogger()})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				ta, err := cable.end(0).Open(ctx)
				require.NoError(t, err)
				tb, err := cable.end(1).Open(ctx)
				require.NoError(t, err)
				var errA, errB error
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { defer wg.Done(); errA = a.serve(ctx, ta) }()
				go func() { defer wg.Done(); errB = b.serve(ctx, tb) }()
				wg.Wait()
				var ae *AuthError
				for _, err := range []error{errA, errB} {
					if errors.As(err, &ae) {
						assert.Contains(t, err.Error(), "peer failed authentication")
					}
				}
				// Both ends say why, in words that point at the fix.
				for _, err := range []error{errA, errB} {
					require.ErrorAs(t, err, &ae)
					assert.Contains(t, err.Error(), tc.want)
				}
				assert.Empty(t, ua.starts, "no session without authentication")
				assert.Empty(t, ub.starts)
				assert.Empty(t, ub.got, "nothing delivered")
			})
		})
	}
}

// frameTamper reassembles frames written by one side and lets f change
// each one (decoded, CRC included) before the other side reads it.
type frameTamper struct {
	mu    sync.Mutex
	split [2]wireSplit
	f     func(side int, frame []byte) []byte
	seen  [2][][]byte
}

func (ft *frameTamper) tamper(side int, chunk []byte) []byte {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if len(chunk) == 1 && chunk[0] == 0 && ft.split[side].inRaw() {
		// A transport's first write, a lone delimiter, while a
		// length-prefixed frame was cut off: what was left of the
		// previous transport's stream is gone with it. (A COBS frame
		// cut off ends at the delimiter, as on the wire.)
		ft.split[side] = wireSplit{}
	}
	var out []byte
	for _, u := range ft.split[side].feed(chunk) {
		if len(u.frame) == 0 {
			out = append(out, u.enc...)
			continue
		}
		ft.seen[side] = append(ft.seen[side], u.frame)
		dec := u.frame
		if ft.f != nil {
			dec = ft.f(side, dec)
		}
		out = append(out, u.reencode(dec)...)
	}
	return out
}

// resealCRC recomputes a decoded frame's CRC after a change.
func resealCRC(frame []byte) []byte {
	return sealFrame(append([]byte(nil), frame[:len(frame)-crcSize]...))
}

func TestAuthTamperedFrameNeverDelivered(t *testing.T) {
	for _, props := range []Properties{{Reliable: true}, {LineRate: 11520}} {
		synctest.Test(t, func(t *testing.T) {
			cable := newCable(props, 13)
			cable.Rate = props.LineRate
			flipped := 0
			ft := &frameTamper{f: func(side int, frame []byte) []byte {
				// Flip one bit in every 5th data frame from a and fix
				// the CRC, as a man in the middle would.
				if side == 0 && frame[0] == frameData && len(frame) > 40 {
					flipped++
					if flipped%5 == 0 {
						frame = append([]byte(nil), frame...)
						frame[20] ^= 0x04
						return resealCRC(frame)
					}
				}
				return frame
			}}
			cable.Tamper = ft.tamper
			size := 40 << 10
			if props.Reliable {
				size = 2 << 20
			}
			da := randomBytes(size, 3)
			p := startKeyed(t, cable, key(9), key(9), da, nil)
			p.waitFor(t, 0, len(da), 10*time.Minute)
			p.stop()
			checkSame(t, da, p.ub.got)
			assert.Greater(t, flipped, 5, "frames were tampered with")
			if props.Reliable {
				assert.Greater(t, p.b.Stats().TransportOpens.Load(), uint64(1), "tampering on a reliable transport resets it")
				assert.Greater(t, p.a.Stats().Resumes.Load(), uint64(0))
			} else {
				assert.Greater(t, p.a.Stats().FramesResent.Load(), uint64(0), "tampered frames were rejected and sent again")
			}
		})
	}
}

func TestAuthReplayedHandshakeFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Record a real handshake between a and b.
		cable := newCable(Properties{Reliable: true}, 14)
		ft := &frameTamper{}
		cable.Tamper = ft.tamper
		p := startKeyed(t, cable, key(5), key(5), []byte("hello"), []byte("world"))
		p.waitFor(t, 5, 5, time.Minute)
		p.stop()
		ft.mu.Lock()
		recorded := ft.seen
		ft.mu.Unlock()

		// Replay each side's recorded frames, in order, to a fresh end
		// holding the key. It must not establish a session.
		for side := range 2 {
			cable2 := newCable(Properties{Reliable: true}, 15)
			u := &byteUpper{}
			victim := New(cable2.end(1-side), u, Config{Secret: key(5), Logger: quietLogger(), HandshakeTimeout: 3 * time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			tv, err := cable2.end(1 - side).Open(ctx)
			require.NoError(t, err)
			attacker, err := cable2.end(side).Open(ctx)
			require.NoError(t, err)
			go func() {
				_, _ = attacker.Write([]byte{0})
				for _, f := range recorded[side] {
					if _, err := attacker.Write(append(cobsEncode(nil, f), 0)); err != nil {
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := attacker.Read(buf); err != nil {
						return
					}
				}
			}()
			err = victim.serve(ctx, tv)
			cancel()
			require.Error(t, err)
			assert.Empty(t, u.starts, "replay of side %d's frames established nothing", side)
			assert.Empty(t, u.got)
		}
	})
}

func TestExtendCounter(t *testing.T) {
	for _, tc := range []struct {
		next uint64
		low  uint16
		want uint64
	}{
		{0, 0, 0}, {0, 5, 5}, {65535, 65535, 65535}, {65536, 0, 65536}, {65530, 3, 65539},
		{65539, 65534, 65534}, {1 << 20, 7, 1<<20 + 7}, {100, 90, 90},
	} {
		assert.Equal(t, tc.want, extendCounter(tc.next, tc.low), "next %d low %d", tc.next, tc.low)
	}
}
