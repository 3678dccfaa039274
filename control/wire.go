package control

import (
	"runtime"
	"time"
)

// payload returns the payload counters of the layer under the mux.
func (c *Collector) linkPayload() (out, in uint64) {
	if c.src.Link == nil {
		if c.src.DeleGate == nil {
			return 0, 0
		}
		st := c.src.DeleGate.Stats()
		return st.PayloadOut.Load(), st.PayloadIn.Load()
	}
	st := c.src.Link.Stats()
	return st.PayloadOut.Load(), st.PayloadIn.Load()
}

// snapshotDeleGate is Snapshot for an end that speaks DeleGate's SockMux:
// packets count as frames; there are no sessions ids, round trips,
// retransmissions or compression.
func (c *Collector) snapshotDeleGate(now time.Time) Status {
	s := Status{
		Name: c.src.Name, PID: c.pid, Version: c.src.Version,
		State: "waiting", Line: c.src.line(), Started: c.started,
		UptimeSeconds: now.Sub(c.started).Seconds(),
		Streams:       []Stream{},
	}
	if c.src.Driver != nil {
		s.Transport = c.src.Driver.String() + " (DeleGate SockMux)"
		if dv, ok := c.src.Driver.(interface{ Device() string }); ok {
			s.Device = dv.Device()
		}
	}
	if dg := c.src.DeleGate; dg != nil {
		st := dg.Stats()
		if st.Up.Load() {
			s.State = "up"
			s.UpSeconds = now.Sub(time.Unix(0, st.UpSince.Load())).Seconds()
		}
		s.BytesOut, s.BytesIn = st.BytesOut.Load(), st.BytesIn.Load()
		s.PayloadOut, s.PayloadIn = st.PayloadOut.Load(), st.PayloadIn.Load()
		s.CompressedOut, s.CompressedIn = s.PayloadOut, s.PayloadIn
		s.FramesOut, s.FramesIn = st.PacketsOut.Load(), st.PacketsIn.Load()
		s.TransportOpens, s.Sessions = st.TransportOpens.Load(), st.Sessions.Load()
	}
	if c.src.Serial != nil {
		ls := c.src.Serial()
		s.Serial = &ls
	}
	s.Goroutines = runtime.NumGoroutine()
	s.RSSBytes, s.RSSPeak = rss()
	c.mu.Lock()
	c.sampleLocked(now)
	s.GoodputOut, s.GoodputIn = c.goodOut, c.goodIn
	c.mu.Unlock()
	if c.src.Mux != nil {
		s.Streams = streams(c.src.Mux, now)
	}
	return s
}
