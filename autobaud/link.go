package autobaud

import (
	"time"

	"github.com/sockmux/sockmux/link"
)

// FromLink is the Line of a *link.Link.
func FromLink(l *link.Link) Line { return linkLine{l} }

type linkLine struct{ l *link.Link }

func (x linkLine) SetLineRate(rate int) error { return x.l.SetLineRate(rate) }

func (x linkLine) Counters() Counters {
	st := x.l.Stats()
	return Counters{FramesIn: st.FramesIn.Load(), FramesBad: st.FramesBad.Load(), FramesOut: st.FramesOut.Load(), FramesResent: st.FramesResent.Load()}
}

func (x linkLine) Up() bool { return x.l.State() == link.StateUp }

func (x linkLine) UpSince() time.Time { return x.l.UpSince() }

func (x linkLine) Leader() (bool, bool) {
	local, peer := x.l.Session()
	return local > peer, peer != 0
}

func (x linkLine) PeerServes(s string) bool { return x.l.PeerServes(s) }

func (x linkLine) RTT() time.Duration { return x.l.RTT() }
