//go:build linux

package bench

// The measurement behind the link's compression stage (issue 15): how
// well each codec compresses the bench's text corpus when it must flush
// at every unit (a link payload), per unit size, and what it costs in CPU.
// Run with SOCKMUX_RATIO=1 go test -run TestCompressionRatio -v ./bench/

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

func TestCompressionRatio(t *testing.T) {
	if os.Getenv("SOCKMUX_RATIO") == "" {
		t.Skip("set SOCKMUX_RATIO=1 to measure")
	}
	size := 384 << 10
	if v := os.Getenv("SOCKMUX_RATIO_SIZE"); v != "" {
		fmt.Sscan(v, &size)
	}
	corpus, err := textCorpus(size)
	if err != nil {
		t.Fatal(err)
	}
	units := []int{512, 1024, 2048, 4096, 8192, 16384, 65536, 1 << 30}
	type codec struct {
		name string
		run  func(unit int) (int, time.Duration) // compressed bytes, time
	}
	flateRun := func(level int) func(int) (int, time.Duration) {
		return func(unit int) (int, time.Duration) {
			var out bytes.Buffer
			w, _ := flate.NewWriter(&out, level)
			start := time.Now()
			total := 0
			for off := 0; off < len(corpus); off += unit {
				end := min(off+unit, len(corpus))
				out.Reset()
				_, _ = w.Write(corpus[off:end])
				_ = w.Flush()
				total += 1 + min(out.Len(), end-off)
			}
			return total, time.Since(start)
		}
	}
	// The receiver's side of deflate as the link decodes it: each unit
	// a stream of its own, with the last 32 KiB of plain text as its
	// dictionary.
	inflateRun := func(unit int) (int, time.Duration) {
		var units [][]byte
		var out bytes.Buffer
		w, _ := flate.NewWriter(&out, 9)
		for off := 0; off < len(corpus); off += unit {
			out.Reset()
			_, _ = w.Write(corpus[off:min(off+unit, len(corpus))])
			_ = w.Flush()
			units = append(units, bytes.Clone(out.Bytes()))
		}
		start := time.Now()
		var zr io.ReadCloser
		buf := make([]byte, unit)
		total := 0
		for i, u := range units {
			off := i * unit
			hist := corpus[max(0, off-32<<10):off]
			if zr == nil {
				zr = flate.NewReaderDict(bytes.NewReader(u), hist)
			} else {
				_ = zr.(flate.Resetter).Reset(bytes.NewReader(u), hist)
			}
			n, _ := io.ReadFull(zr, buf[:min(unit, len(corpus)-off)])
			total += n
		}
		if total != len(corpus) {
			t.Fatalf("inflated %d of %d", total, len(corpus))
		}
		return len(corpus), time.Since(start)
	}
	zstdRun := func(level zstd.EncoderLevel, window int) func(int) (int, time.Duration) {
		return func(unit int) (int, time.Duration) {
			var out bytes.Buffer
			w, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(level), zstd.WithWindowSize(window),
				zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			total := 0
			for off := 0; off < len(corpus); off += unit {
				end := min(off+unit, len(corpus))
				out.Reset()
				_, _ = w.Write(corpus[off:end])
				_ = w.Flush()
				total += 1 + min(out.Len(), end-off)
			}
			return total, time.Since(start)
		}
	}
	codecs := []codec{
		{"flate-1", flateRun(1)},
		{"flate-6", flateRun(6)},
		{"flate-9", flateRun(9)},
		{"inflate (ratio 1)", inflateRun},
		{"zstd-fast w32K", zstdRun(zstd.SpeedFastest, 32<<10)},
		{"zstd-default w32K", zstdRun(zstd.SpeedDefault, 32<<10)},
		{"zstd-better w32K", zstdRun(zstd.SpeedBetterCompression, 32<<10)},
		{"zstd-best w32K", zstdRun(zstd.SpeedBestCompression, 32<<10)},
		{"zstd-default w256K", zstdRun(zstd.SpeedDefault, 256<<10)},
		{"zstd-better w256K", zstdRun(zstd.SpeedBetterCompression, 256<<10)},
		{"zstd-best w256K", zstdRun(zstd.SpeedBestCompression, 256<<10)},
		{"zstd-better w1M", zstdRun(zstd.SpeedBetterCompression, 1<<20)},
		{"zstd-best w1M", zstdRun(zstd.SpeedBestCompression, 1<<20)},
	}
	t.Logf("corpus %d bytes; ratio = plain / (compressed + 1 codec byte per unit); CPU in ms per MiB of plain text", len(corpus))
	hdr := fmt.Sprintf("%-20s", "codec")
	for _, u := range units {
		hdr += fmt.Sprintf(" %12d", u)
	}
	t.Log(hdr)
	for _, c := range codecs {
		line := fmt.Sprintf("%-20s", c.name)
		for _, u := range units {
			n, d := c.run(u)
			ms := d.Seconds() * 1000 / (float64(len(corpus)) / (1 << 20))
			line += fmt.Sprintf(" %5.2f %4.0fms", float64(len(corpus))/float64(n), ms)
		}
		t.Log(line)
	}
}
