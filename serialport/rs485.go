package serialport

import (
	"fmt"
	"time"
)

// RS485 asks for the kernel's RS-485 mode (Linux): the driver raises RTS
// to enable the line driver while it sends and drops it after, with the
// delays given, so an adapter or UART whose transceiver is switched by RTS
// can share a two-wire bus. Adapters with automatic direction control do
// not need it (only the link's --half-duplex).
type RS485 struct {
	// DelayBefore is how long RTS is raised before the first bit goes
	// out, DelayAfter how long it stays raised after the last (the
	// kernel counts whole milliseconds).
	DelayBefore, DelayAfter time.Duration
	// RTSLowOnSend inverts the sense: RTS low while sending (some
	// transceivers' enable input is active low).
	RTSLowOnSend bool
	// RxDuringTx keeps the receiver on while sending, so the port hears
	// its own bytes (the link drops them as its echo).
	RxDuringTx bool
}

// maxRS485Delay bounds the delays: the kernel clamps them at 100 ms.
const maxRS485Delay = 100 * time.Millisecond

// Validate checks the delays.
func (r RS485) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"before", r.DelayBefore}, {"after", r.DelayAfter}} {
		if d.v < 0 || d.v > maxRS485Delay {
			return fmt.Errorf("RS-485 delay %s sending %v: must be between 0 and %v", d.name, d.v, maxRS485Delay)
		}
	}
	return nil
}

func (r RS485) String() string {
	rts := "RTS high while sending"
	if r.RTSLowOnSend {
		rts = "RTS low while sending"
	}
	s := fmt.Sprintf("RS-485 mode: %s, delays %v before and %v after", rts, r.DelayBefore.Round(time.Millisecond), r.DelayAfter.Round(time.Millisecond))
	if r.RxDuringTx {
		s += ", receiver on while sending"
	}
	return s
}
