package cable

import "time"

// USBPacket is the most bytes the simulated USB adapter delivers in one
// batch: a full-speed USB packet of 64 bytes, less the 2 bytes of modem
// status an FTDI chip puts in each.
const USBPacket = 62

// latencyTimer holds received bytes the way a USB serial adapter's latency
// timer does (FTDI: 16 ms by default). A batch goes to the reading end as
// soon as it fills a USB packet (USBPacket bytes), or when the timer
// expires. The timer runs all the time with period every and restarts
// whenever a batch goes out, as the chip's does, so a byte that arrives
// alone waits between 0 and every, every/2 on average; under a steady
// stream at 115200 baud full packets go out every 5.4 ms and the timer
// does not matter.
type latencyTimer struct {
	every time.Duration
	held  []byte
	next  time.Time // when the timer expires next
}

func newLatencyTimer(every time.Duration, now time.Time) *latencyTimer {
	return &latencyTimer{every: every, next: now.Add(every)}
}

// add takes bytes that arrived at now and returns the full packets to
// deliver now (possibly none), all in one slice; the rest is held.
func (l *latencyTimer) add(b []byte, now time.Time) []byte {
	if len(l.held) == 0 && !now.Before(l.next) {
		// The timer kept running while nothing was held: find the
		// expiry this byte waits for.
		k := now.Sub(l.next)/l.every + 1
		l.next = l.next.Add(k * l.every)
	}
	l.held = append(l.held, b...)
	full := len(l.held) / USBPacket * USBPacket
	if full == 0 {
		return nil
	}
	out := append([]byte(nil), l.held[:full]...)
	l.held = append(l.held[:0], l.held[full:]...)
	l.next = now.Add(l.every)
	return out
}

// deadline is when held bytes must go out; zero when none are held.
func (l *latencyTimer) deadline() time.Time {
	if len(l.held) == 0 {
		return time.Time{}
	}
	return l.next
}

// expire returns the held bytes if the timer has expired at now.
func (l *latencyTimer) expire(now time.Time) []byte {
	if len(l.held) == 0 || now.Before(l.next) {
		return nil
	}
	out := append([]byte(nil), l.held...)
	l.held = l.held[:0]
	l.next = now.Add(l.every)
	return out
}
