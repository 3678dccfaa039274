package link

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// textBytes is n bytes of log-like text: lines from a small vocabulary
// with numbers that vary, compressible as logs and JSON are.
func textBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	words := []string{"connection", "accepted", "stream", "closed", "bytes", "session", "resumed",
		"listen", "error", "timeout", "frame", "window", "\"status\":", "\"id\":", "{\"level\":\"info\",", "}"}
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "2026-12-03T12:%02d:%02d.%03d level=info", r.IntN(60), r.IntN(60), r.IntN(1000))
		for range 3 + r.IntN(6) {
			fmt.Fprintf(&b, " %s=%d", words[r.IntN(len(words))], r.IntN(5000))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

// mixedBytes alternates text and random runs of varying length.
func mixedBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 4))
	var b []byte
	for i := 0; len(b) < n; i++ {
		k := 1 + r.IntN(8<<10)
		if i%2 == 0 {
			b = append(b, textBytes(k, seed+uint64(i))...)
		} else {
			b = append(b, randomBytes(k, seed+uint64(i))...)
		}
	}
	return b[:n]
}

// roundTrip passes chunks through a compressor and a decompressor as the
// link does, bypass for every chunk where bypass says so, and returns the
// payload bytes sent.
func roundTrip(t *testing.T, level int, chunks [][]byte, bypass func(i int) bool) int {
	t.Helper()
	enc, dec := newCompressor(level), newDecompressor(maxPayload)
	sent := 0
	for i, c := range chunks {
		payload := encodePayload(enc, c, bypass(i))
		require.LessOrEqual(t, len(payload), codecHeader+len(c), "a frame never grows beyond its codec byte")
		sent += len(payload)
		got, err := dec.decode(payload)
		require.NoError(t, err, "chunk %d (%d bytes)", i, len(c))
		require.Equal(t, c, got, "chunk %d", i)
	}
	return sent
}

// encodePayload is the payload the link sends for plain: the codec byte
// and what follows it.
func encodePayload(c *compressor, plain []byte, bypass bool) []byte {
	codec, body := c.compress(plain, bypass)
	return append([]byte{codec}, body...)
}

// chunk cuts b into pieces of sizes drawn from sizes in turn.
func chunk(b []byte, sizes ...int) [][]byte {
	var out [][]byte
	for i := 0; len(b) > 0; i++ {
		n := min(len(b), sizes[i%len(sizes)])
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func TestCompressRoundTrip(t *testing.T) {
	never := func(int) bool { return false }
	text, random, mixed := textBytes(256<<10, 1), randomBytes(128<<10, 2), mixedBytes(256<<10, 3)
	for _, level := range []int{0, flate.BestSpeed, flate.BestCompression} {
		t.Run(fmt.Sprint("level", level), func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				chunks [][]byte
				bypass func(int) bool
			}{
				{"text", chunk(text, 1130), never},
				{"random", chunk(random, 1130), never},
				{"mixed", chunk(mixed, 500, 1, 4000, 1130, 3), never},
				{"tiny", chunk(text[:4096], 1, 2, 3), never},
				{"huge", chunk(mixed, maxPayload-codecHeader), never},
				{"bypass interleaved", chunk(mixed, 700, 64), func(i int) bool { return i%3 == 1 }},
			} {
				t.Run(tc.name, func(t *testing.T) {
					total := 0
					for _, c := range tc.chunks {
						total += len(c)
					}
					sent := roundTrip(t, level, tc.chunks, tc.bypass)
					switch {
					case level == 0:
						assert.Equal(t, total+len(tc.chunks), sent, "level 0 sends everything as it is")
					case tc.name == "text":
						assert.Less(t, sent, total/3, "text compresses")
					case tc.name == "random":
						assert.Equal(t, total+len(tc.chunks), sent, "random bytes go as they are")
					}
				})
			}
		})
	}
}

// A stored frame is part of the history at both ends: a later frame that
// repeats it compresses against it.
func TestCompressStoredFeedsHistory(t *testing.T) {
	enc, dec := newCompressor(flate.BestCompression), newDecompressor(maxPayload)
	r := randomBytes(1000, 9)
	p1 := encodePayload(enc, r, false)
	require.Equal(t, byte(codecStored), p1[0])
	_, err := dec.decode(p1)
	require.NoError(t, err)
	p2 := encodePayload(enc, r, false)
	require.Equal(t, byte(codecDeflate), p2[0])
	assert.Less(t, len(p2), 40, "a repeat of a stored frame is a back-reference")
	got, err := dec.decode(p2)
	require.NoError(t, err)
	assert.Equal(t, r, got)
}

// deflated is data compressed as one frame would be, codec byte first.
func deflated(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.BestCompression)
	require.NoError(t, err)
	_, _ = w.Write(data)
	require.NoError(t, w.Flush())
	return append([]byte{codecDeflate}, b.Bytes()...)
}

// farReference is a frame whose matches reach into a history the
// receiver does not have.
func farReference(t *testing.T) []byte {
	t.Helper()
	dict := textBytes(8000, 6)
	var b bytes.Buffer
	w, err := flate.NewWriterDict(&b, flate.BestCompression, dict)
	require.NoError(t, err)
	_, _ = w.Write(dict[1000:5000])
	require.NoError(t, w.Flush())
	return append([]byte{codecDeflate}, b.Bytes()...)
}

func TestDecompressRefusesHostilePayloads(t *testing.T) {
	bomb := deflated(t, make([]byte, 16<<20)) // 16 MiB of zeros, about 16 KiB
	require.Less(t, len(bomb), 20<<10)
	final := func() []byte { // a stream that ends (BFINAL): not ours
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, 9)
		_, _ = w.Write([]byte("hello"))
		_ = w.Close()
		return append(append([]byte{codecDeflate}, b.Bytes()...), 0, 0, 0xff, 0xff)
	}()
	good := deflated(t, textBytes(4000, 5))
	for _, tc := range []struct {
		name    string
		payload []byte
		want    error
	}{
		{"bomb", bomb, errCodecBomb},
		{"empty", nil, errCodecEmpty},
		{"unknown codec", []byte{0x7f, 1, 2}, errCodecUnknown},
		{"reserved block type", []byte{codecDeflate, 0x07, 0, 0, 0xff, 0xff}, nil},
		{"cut short", good[:len(good)/2], errCodecTrail},
		{"trailing bytes", append(append([]byte{}, good...), 0x01, 0, 0, 0xff, 0xff), nil},
		{"final block", final, errCodecTrail},
		{"stored too long", append([]byte{codecStored}, make([]byte, 1201)...), errCodecBomb},
		{"reference before the history", farReference(t), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecompressor(1200)
			got, err := d.decode(tc.payload)
			require.Error(t, err)
			assert.Nil(t, got, "nothing delivered")
			if tc.want != nil {
				assert.ErrorIs(t, err, tc.want)
			}
			assert.LessOrEqual(t, cap(d.out), 1201, "output bounded by the largest payload")
			assert.LessOrEqual(t, cap(d.hist), 2*historySize, "history bounded")
		})
	}
}

// compressConfig is a configuration with compression setting c.
func compressConfig(c Compression) Config { return Config{Compress: c} }

func TestCompressedTransfer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props Properties
		ber   float64
		cfg   Compression
		data  func(n int, seed uint64) []byte
		ratio float64 // at least this much smaller on the wire, a to b
	}{
		{"serial text", Properties{LineRate: 11520}, 0, CompressAuto, textBytes, 3},
		{"serial random", Properties{LineRate: 11520}, 0, CompressAuto, randomBytes, 0},
		{"serial mixed ber1e-4", Properties{LineRate: 11520}, 1e-4, CompressAuto, mixedBytes, 1.3},
		{"serial text ber1e-4 fast", Properties{LineRate: 11520}, 1e-4, CompressFast, textBytes, 2.5},
		{"tcp text best", Properties{Reliable: true}, 0, CompressBest, textBytes, 3},
		{"tcp text auto", Properties{Reliable: true}, 0, CompressAuto, textBytes, 0},
		{"tcp text best, auto", Properties{Reliable: true}, 0, CompressBest, textBytes, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cable := newCable(tc.props, 21)
				cable.Rate = tc.props.LineRate
				cable.BER = tc.ber
				size := 256 << 10
				if tc.props.Reliable {
					size = 4 << 20
					cable.Rate = 50 << 20
				}
				da, db := tc.data(size, 1), tc.data(size/4, 2)
				cfgB := compressConfig(tc.cfg)
				if tc.ratio < 0 {
					cfgB = compressConfig(CompressAuto) // which over TCP is off
				}
				cfgA := compressConfig(tc.cfg)
				if tc.ber > 0 {
					// The contexts must survive retransmission: without
					// FEC, which would repair most of the damage.
					cfgA.FEC, cfgB.FEC = FECOff, FECOff
				}
				p := startPairConfigs(t, cable, da, db, cfgA, cfgB)
				p.waitFor(t, len(db), len(da), 10*time.Minute)
				p.stop()
				p.checkGot(t, da, db)
				st := p.a.Stats()
				assert.Equal(t, uint64(len(da)), st.PayloadOut.Load())
				assert.Equal(t, uint64(len(da)), p.b.Stats().PayloadIn.Load())
				assert.Equal(t, st.CompressedOut.Load(), p.b.Stats().CompressedIn.Load(), "what a sent, b received")
				switch {
				case tc.ratio > 0:
					assert.Less(t, float64(st.CompressedOut.Load())*tc.ratio, float64(st.PayloadOut.Load()), "compressed: %s", st)
				case tc.props.Reliable && (tc.cfg == CompressAuto || tc.ratio < 0):
					assert.Equal(t, st.PayloadOut.Load(), st.CompressedOut.Load(), "auto over TCP runs as off: no codec bytes")
				default:
					// One codec byte a frame at most.
					assert.LessOrEqual(t, st.CompressedOut.Load(), st.PayloadOut.Load()+st.FramesOut.Load(), "%s", st)
				}
				if tc.ber > 0 {
					assert.NotZero(t, st.FramesResent.Load(), "retransmissions happened")
				}
				assert.Equal(t, uint64(1), st.Sessions.Load())
			})
		})
	}
}

func TestCompressedResumeAfterCuts(t *testing.T) {
	for _, props := range []Properties{{Reliable: true}, {LineRate: 11520}} {
		t.Run(map[bool]string{true: "reliable", false: "serial"}[props.Reliable], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cable := newCable(props, 5)
				cable.Rate = props.LineRate
				size := 96 << 10
				if props.Reliable {
					cable.Rate = 50 << 20
					size = 4 << 20
				}
				da, db := mixedBytes(size, 7), textBytes(size, 8)
				p := startPair(t, cable, da, db, compressConfig(CompressBest))
				p.cutWhileReceiving(cable, size, 5)
				p.waitFor(t, len(db), len(da), 10*time.Minute)
				p.stop()
				p.checkGot(t, da, db)
				assert.Equal(t, uint64(1), p.a.Stats().Sessions.Load())
				assert.GreaterOrEqual(t, p.a.Stats().Resumes.Load(), uint64(5))
				assert.Less(t, p.b.Stats().CompressedOut.Load()*2, p.b.Stats().PayloadOut.Load(), "text went compressed")
			})
		})
	}
}

// A new session starts its contexts fresh: the peer that restarted
// decodes what we send from then on.
func TestCompressNewSessionStartsFresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{LineRate: 11520}, 6)
		cable.Rate = 11520
		da := textBytes(64<<10, 11)
		p := startPair(t, cable, da, nil, Config{})
		p.waitFor(t, 0, len(da), 10*time.Minute)
		p.b.Close("restart", time.Second)
		// The new b must decode a's text from its first byte after the
		// restart (a fresh decoder meets a fresh encoder, whose history
		// would otherwise reach back into the old session's text).
		ub2 := &byteUpper{}
		b2 := New(cable.end(1), ub2, Config{Logger: quietLogger()})
		p.wg.Add(1)
		go func() { defer p.wg.Done(); _ = b2.Run(t.Context()) }()
		for p.a.Stats().Sessions.Load() < 2 || p.a.State() != StateUp {
			time.Sleep(time.Millisecond)
		}
		p.ua.mu.Lock()
		p.ua.send = append(da[:16<<10:16<<10], textBytes(16<<10, 12)...)
		p.ua.mu.Unlock()
		for ub2.received() < 32<<10 {
			p.a.Notify()
			time.Sleep(10 * time.Millisecond)
		}
		b2.Close("done", time.Second)
		p.stop()
		ub2.mu.Lock()
		defer ub2.mu.Unlock()
		assert.Less(t, p.a.Stats().CompressedOut.Load(), p.a.Stats().PayloadOut.Load()/2)
		checkSame(t, append(da[:16<<10:16<<10], textBytes(16<<10, 12)...), ub2.got)
	})
}

func TestCompressPeerWithout(t *testing.T) {
	for _, tc := range []struct{ a, b Compression }{{CompressOff, CompressAuto}, {CompressBest, CompressOff}} {
		t.Run(tc.a.String()+"-"+tc.b.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cable := newCable(Properties{LineRate: 11520}, 8)
				cable.Rate = 11520
				da, db := textBytes(32<<10, 1), textBytes(32<<10, 2)
				p := startPairConfigs(t, cable, da, db, compressConfig(tc.a), compressConfig(tc.b))
				p.waitFor(t, len(db), len(da), 10*time.Minute)
				p.stop()
				p.checkGot(t, da, db)
				for _, l := range []*Link{p.a, p.b} {
					assert.Equal(t, l.Stats().PayloadOut.Load(), l.Stats().CompressedOut.Load(), "no codec bytes, no compression")
				}
			})
		})
	}
}

// A peer that sends a payload that does not decompress (a bomb, or bytes
// that are not deflate) breaks the protocol: the session ends, nothing of
// the payload is delivered, and what came before it is intact.
func TestCompressHostilePayloadNeverDelivered(t *testing.T) {
	bomb := deflated(t, make([]byte, 8<<20))
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"bomb", bomb},
		{"corrupt", []byte{codecDeflate, 0xff, 0xfe, 0xfd, 0, 0, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cable := newCable(Properties{Reliable: true}, 9)
				cable.Rate = 50 << 20
				dataFrames := 0
				var goodBefore int
				ft := &frameTamper{f: func(side int, frame []byte) []byte {
					if side != 0 || frame[0] != frameData {
						return frame
					}
					dataFrames++
					if dataFrames != 3 {
						return frame
					}
					bad := append(append([]byte(nil), frame[:dataHeader]...), tc.payload...)
					return sealFrame(bad)
				}}
				cable.Tamper = ft.tamper
				da := textBytes(1<<20, 4)
				ua, ub := &byteUpper{send: da, maxFill: 1000}, &endUpper{byteUpper: &byteUpper{}}
				a := New(cable.end(0), ua, Config{Compress: CompressBest, Logger: quietLogger()})
				b := New(cable.end(1), ub, Config{Compress: CompressBest, Logger: quietLogger()})
				ctx := t.Context()
				done := make(chan struct{}, 2)
				for _, l := range []*Link{a, b} {
					go func() { _ = l.Run(ctx); done <- struct{}{} }()
				}
				for b.Stats().SessionsEnded.Load() == 0 {
					time.Sleep(time.Millisecond)
				}
				ub.mu.Lock()
				goodBefore = len(ub.atEnd)
				got := ub.atEnd
				ub.mu.Unlock()
				a.Close("done", time.Second)
				b.Close("done", time.Second)
				<-done
				<-done
				assert.Equal(t, 2000, goodBefore, "the two frames before it, and nothing of it")
				assert.Equal(t, da[:len(got)], got, "what was delivered is what a sent")
				assert.Less(t, b.Stats().PayloadIn.Load(), uint64(1<<20))
			})
		})
	}
}

// endUpper records what was delivered when the first session ended.
type endUpper struct {
	*byteUpper
	atEnd []byte
	ended bool
}

func (u *endUpper) SessionEnd(reason error) {
	u.mu.Lock()
	if !u.ended {
		u.ended = true
		u.atEnd = append([]byte(nil), u.got...)
	}
	u.mu.Unlock()
	u.byteUpper.SessionEnd(reason)
}

// A keystroke goes at once, at the cost of its codec byte.
func TestCompressKeystrokeFlushedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{LineRate: 11520}, 10)
		cable.Rate = 11520
		p := startPair(t, cable, nil, nil, Config{})
		// Up, and the FEC stage settled: off on a clean line (until then
		// frames go in blocks of the hello level).
		for p.a.State() != StateUp || p.b.State() != StateUp || p.a.FEC().LevelOut != 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // the last block, which says so, crosses
		before := p.a.Stats().CompressedOut.Load()
		start := time.Now()
		p.ua.mu.Lock()
		p.ua.send = []byte("x")
		p.ua.mu.Unlock()
		p.a.Notify()
		for p.ub.received() < 1 {
			time.Sleep(100 * time.Microsecond)
		}
		assert.Less(t, time.Since(start), 10*time.Millisecond, "one short frame's time on the line")
		assert.Equal(t, uint64(2), p.a.Stats().CompressedOut.Load()-before, "the byte and its codec byte")
		p.stop()
	})
}

func TestParseCompression(t *testing.T) {
	for _, c := range Compressions {
		got, err := ParseCompression(c.String())
		require.NoError(t, err)
		assert.Equal(t, c, got)
	}
	_, err := ParseCompression("zstd")
	assert.ErrorContains(t, err, `compression "zstd": want auto, off, fast or best`)
	assert.Equal(t, 0, compressLevel(CompressAuto, Properties{Reliable: true}), "auto: none on a fast transport")
	assert.Equal(t, flate.BestCompression, compressLevel(CompressAuto, Properties{LineRate: 11520}), "auto: best on a slow line")
	assert.Equal(t, 0, compressLevel(CompressOff, Properties{LineRate: 11520}))
}

func FuzzDecompress(f *testing.F) {
	f.Add([]byte{codecDeflate, 0x4a, 0x4c, 0x4a, 0x06, 0x04, 0x00, 0x00, 0xff, 0xff}, []byte("x"))
	f.Add(deflatedFuzzSeed(), []byte{})
	f.Add([]byte{codecStored, 'a', 'b'}, []byte("ab"))
	// A payload of the largest plain size, and one past it.
	big := newCompressor(flate.BestCompression)
	f.Add(encodePayload(big, textBytes(compressPlainMax, 2), false), encodePayload(big, make([]byte, compressPlainMax+1), false))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		// The receiver of a link's own frame size, and of the plain
		// size a compressing end takes.
		for _, limit := range []int{2048, compressPlainMax} {
			d := newDecompressor(limit)
			for _, p := range [][]byte{a, b, a} {
				out, err := d.decode(p)
				if err != nil {
					if out != nil {
						t.Fatalf("error %v with output", err)
					}
					break // the session would end here
				}
				if len(out) > limit {
					t.Fatalf("decoded %d bytes, beyond the cap of %d", len(out), limit)
				}
				if len(d.hist) > 2*historySize || cap(d.hist) > 2*historySize || cap(d.out) > limit+1 {
					t.Fatalf("history grew to %d, output to %d", cap(d.hist), cap(d.out))
				}
			}
		}
	})
}

func deflatedFuzzSeed() []byte {
	c := newCompressor(flate.BestCompression)
	return encodePayload(c, textBytes(1500, 1), false)
}

// The memory a session's compression holds while idle: the sender's
// deflate state at its level and the receiver's history and output
// buffer. Bounded, and reported.
func TestCompressMemoryPerSession(t *testing.T) {
	for _, level := range []int{flate.BestSpeed, flate.BestCompression} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c, d := newCompressor(level), newDecompressor(compressPlainMax)
		c.plain = make([]byte, compressPlainMax) // the sender's payload buffer
		_, err := d.decode(encodePayload(c, textBytes(compressPlainMax, 1), false))
		require.NoError(t, err)
		runtime.ReadMemStats(&after)
		used := after.TotalAlloc - before.TotalAlloc
		t.Logf("level %d: %d KiB per session (both directions' contexts)", level, used>>10)
		assert.Less(t, used, uint64(2<<20), "bounded")
		runtime.KeepAlive(c)
		runtime.KeepAlive(d)
	}
}

// dataPayloads are the payload lengths of the data frames side sent.
func dataPayloads(ft *frameTamper, side int) []int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var n []int
	for _, f := range ft.seen[side] {
		if len(f) >= dataHeader+crcSize && f[0] == frameData {
			n = append(n, len(f)-dataHeader-crcSize)
		}
	}
	return n
}

// With compression a payload carries as many plain bytes as the recent
// ratio fits into the line's frame: text goes in payloads several times
// the frame's size, which still take about a frame on the line. A peer
// that takes no more than its frame (an end from before, here one whose
// plain limit is its frame) gets payloads of its frame's size.
func TestCompressFillsFrameByRatio(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(map[bool]string{false: "peer takes more", true: "peer from before"}[legacy], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cable := newCable(Properties{LineRate: 11520}, 12)
				cable.Rate = 11520
				ft := &frameTamper{}
				cable.Tamper = ft.tamper
				da := textBytes(256<<10, 13)
				ua, ub := &byteUpper{send: da}, &byteUpper{}
				// The tamper counts frames on the line: no FEC blocks.
				a := New(cable.end(0), ua, Config{Logger: quietLogger(), FEC: FECOff})
				b := New(cable.end(1), ub, Config{Logger: quietLogger(), FEC: FECOff})
				if legacy {
					b.setupCompression(0)
				}
				frame := a.Config().MaxPayload
				require.Equal(t, map[bool]int{false: compressPlainMax + codecHeader, true: frame}[legacy], b.acceptMax())
				ctx := t.Context()
				done := make(chan struct{}, 2)
				for _, l := range []*Link{a, b} {
					go func() { _ = l.Run(ctx); done <- struct{}{} }()
				}
				for ub.received() < len(da) {
					time.Sleep(10 * time.Millisecond)
				}
				a.Close("done", time.Second)
				b.Close("done", time.Second)
				<-done
				<-done
				checkSame(t, da, ub.got)
				sizes := dataPayloads(ft, 0)
				require.NotEmpty(t, sizes)
				st := a.Stats()
				plainPerFrame := float64(st.PayloadOut.Load()) / float64(len(sizes))
				long := 0
				for _, n := range sizes {
					require.LessOrEqual(t, n, b.acceptMax(), "never beyond what the peer takes")
					if n > frame*5/4 {
						long++
					}
				}
				t.Logf("%d data frames, %.0f plain and %.0f sent bytes each (the frame: %d); %d longer than 1.25 frames",
					len(sizes), plainPerFrame, float64(st.CompressedOut.Load())/float64(len(sizes)), frame, long)
				if legacy {
					assert.LessOrEqual(t, plainPerFrame, float64(frame))
					return
				}
				assert.Greater(t, plainPerFrame, 2.5*float64(frame), "several frames of text in each")
				assert.Less(t, long, len(sizes)/20, "frames keep about their time on the line")
				assert.Less(t, float64(st.CompressedOut.Load())*3.5, float64(st.PayloadOut.Load()), "%s", st)
			})
		})
	}
}

// The budget follows the ratio: up by the ratio of text, down to the
// frame again as soon as random bytes come, and within bounds.
func TestCompressBudgetFollowsRatio(t *testing.T) {
	z := newCompressor(flate.BestCompression)
	p := payload{room: make([]byte, compressPlainMax), hdr: codecHeader, z: z}
	assert.Equal(t, 1000, p.budget(1001), "nothing learnt yet: the frame")
	text := textBytes(64<<10, 14)
	for len(text) > 0 {
		n := min(len(text), p.budget(1001))
		encodePayload(z, text[:n], false)
		text = text[n:]
	}
	assert.Greater(t, p.budget(1001), 3000, "text: several frames of it")
	assert.LessOrEqual(t, p.budget(1001), int(1000*ratioCeiling))
	assert.LessOrEqual(t, p.budget(100000), compressPlainMax, "never beyond the room")
	encodePayload(z, bytes.Repeat([]byte{'a'}, 16<<10), false)
	assert.Equal(t, int(1000*ratioCeiling), p.budget(1001), "at most the ceiling")
	encodePayload(z, randomBytes(p.budget(1001), 15), false)
	assert.Equal(t, 1000, p.budget(1001), "random bytes: back to the frame at once")
	encodePayload(z, textBytes(500, 16), true)
	before := p.budget(1001)
	encodePayload(z, randomBytes(500, 17), true)
	assert.Equal(t, before, p.budget(1001), "bypass payloads teach nothing")
}

// A payload of the largest plain size decodes; one byte more is a bomb.
func TestDecompressPlainLimit(t *testing.T) {
	d := newDecompressor(compressPlainMax)
	ok := deflated(t, textBytes(compressPlainMax, 18))
	got, err := d.decode(ok)
	require.NoError(t, err)
	assert.Len(t, got, compressPlainMax)
	over := deflated(t, textBytes(compressPlainMax+1, 19))
	got, err = d.decode(over)
	assert.ErrorIs(t, err, errCodecBomb)
	assert.Nil(t, got)
	assert.LessOrEqual(t, cap(d.out), compressPlainMax+1)
}

// The CPU a compressing link spends per byte of text, each way, by the
// plain size of its payloads (at 115200 baud about 4 KiB each, at 9600
// about 1.6 KiB, 16 KiB at most).
func BenchmarkCompressText(b *testing.B) {
	text := textBytes(1<<20, 20)
	for _, unit := range []int{1 << 10, 4 << 10, 16 << 10} {
		var payloads [][]byte
		z := newCompressor(flate.BestCompression)
		for _, c := range chunk(text, unit) {
			payloads = append(payloads, encodePayload(z, c, false))
		}
		b.Run(fmt.Sprintf("encode/%d", unit), func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				z := newCompressor(flate.BestCompression)
				for _, c := range chunk(text, unit) {
					z.compress(c, false)
				}
			}
		})
		b.Run(fmt.Sprintf("decode/%d", unit), func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				d := newDecompressor(compressPlainMax)
				for _, p := range payloads {
					if _, err := d.decode(p); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// Payloads longer than the line's frame (random bytes right after text)
// survive a noisy line: lost, they go again in fragments, and what
// arrives is what was sent.
func TestCompressLongPayloadsOnANoisyLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{LineRate: 11520}, 22)
		cable.Rate = 11520
		cable.BER = 1e-4
		ft := &frameTamper{}
		cable.Tamper = ft.tamper
		var da []byte
		for i := range 8 {
			da = append(da, textBytes(24<<10, uint64(30+i))...)
			da = append(da, randomBytes(6<<10, uint64(40+i))...)
		}
		p := startPairConfigs(t, cable, da, nil, Config{}, Config{})
		p.waitFor(t, 0, len(da), 10*time.Minute)
		p.stop()
		p.checkGot(t, da, nil)
		frame, long := p.a.Config().MaxPayload, 0
		for _, n := range dataPayloads(ft, 0) {
			require.LessOrEqual(t, n, p.b.acceptMax())
			if n > frame {
				long++
			}
		}
		st := p.a.Stats()
		t.Logf("%d payloads longer than the frame; %s", long, st)
		assert.NotZero(t, long, "random bytes after text went in payloads longer than the frame")
		assert.NotZero(t, st.FramesResent.Load(), "the line lost some")
		assert.Less(t, float64(st.CompressedOut.Load())*1.5, float64(st.PayloadOut.Load()))
	})
}
