package link

import (
	"testing"
	"time"
)

// A line kept full by slices costs at most about 100 writes a second of
// line time, at any rate: each slice is sliceTime's worth of bytes.
func TestPacerSlicesAreTenMillisecondsOfLine(t *testing.T) {
	for _, rate := range []int{11520, 92160} { // 115200 and 921600 baud
		p := newPacer(rate, nil)
		n := p.sliceLen()
		if got := lineTime(n, rate); got < 9*time.Millisecond {
			t.Errorf("rate %d B/s: slice of %d bytes is %v of line, want about %v (fewer wake-ups)", rate, n, got, 10*time.Millisecond)
		}
	}
}
