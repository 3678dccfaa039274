package control

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/sockmux/sockmux/link"
)

// snapshotHub is Snapshot for a hub: its peers, each in a line, and the
// sums of their counters.
func (c *Collector) snapshotHub(now time.Time) Status {
	s := Status{
		Name: c.src.Name, PID: c.pid, Version: c.src.Version, State: "hub", Hub: true,
		Transport: c.src.Transport, Started: c.started, UptimeSeconds: now.Sub(c.started).Seconds(),
		Streams: []Stream{}, Peers: []PeerStatus{},
	}
	if c.src.Refused != nil {
		s.Refused = c.src.Refused()
	}
	for _, p := range c.src.Peers() {
		ps := peerStatus(p, now)
		s.Peers = append(s.Peers, ps)
		st := p.Link.Stats()
		s.BytesOut += ps.BytesOut
		s.BytesIn += ps.BytesIn
		s.PayloadOut += ps.PayloadOut
		s.PayloadIn += ps.PayloadIn
		s.CompressedOut += st.CompressedOut.Load()
		s.CompressedIn += st.CompressedIn.Load()
		s.FramesOut += st.FramesOut.Load()
		s.FramesIn += st.FramesIn.Load()
		s.FramesResent += st.FramesResent.Load()
		s.FramesBad += st.FramesBad.Load()
		s.FramesDup += st.FramesDup.Load()
		s.TransportOpens += st.TransportOpens.Load()
		s.Sessions += ps.Sessions
		s.SessionsEnded += st.SessionsEnded.Load()
		s.Resumes += ps.Resumes
		s.AuthFailures += ps.AuthFailures
		s.Preemptions += st.Preemptions.Load()
	}
	s.Goroutines = runtime.NumGoroutine()
	s.RSSBytes, s.RSSPeak = rss()
	c.mu.Lock()
	c.sampleLocked(now)
	s.GoodputOut, s.GoodputIn = c.goodOut, c.goodIn
	c.mu.Unlock()
	return s
}

// peerStatus is one peer's line.
func peerStatus(p PeerSource, now time.Time) PeerStatus {
	l := p.Link
	st := l.Stats()
	state := l.State()
	_, peer := l.Session()
	ps := PeerStatus{
		Name: p.Name, State: state.String(), Transport: p.Driver.String(),
		RTTSeconds: l.RTT().Seconds(),
		BytesOut:   st.BytesOut.Load(), BytesIn: st.BytesIn.Load(),
		PayloadOut: st.PayloadOut.Load(), PayloadIn: st.PayloadIn.Load(),
		Streams:  p.Mux.NumStreams(),
		Sessions: st.Sessions.Load(), Resumes: st.Resumes.Load(), AuthFailures: st.AuthFailures.Load(),
	}
	if peer != 0 {
		ps.Peer = fmt.Sprintf("%016x", peer)
	}
	if since := l.UpSince(); state == link.StateUp && !since.IsZero() {
		ps.UpSeconds = now.Sub(since).Seconds()
	}
	return ps
}

// PeerSnapshot returns the full status of a hub's peer called name (in
// any case), as a plain end's Snapshot is; its Name is HUB/PEER. Goodput
// counts from the first PeerSnapshot of the peer.
func (c *Collector) PeerSnapshot(name string) (Status, error) {
	if c.src.Peers == nil {
		return Status{}, fmt.Errorf("this link is not a hub: it has no peers (sockmux status without a peer name)")
	}
	for _, p := range c.src.Peers() {
		if !strings.EqualFold(p.Name, name) {
			continue
		}
		c.mu.Lock()
		if c.peers == nil {
			c.peers = map[string]*Collector{}
		}
		key := strings.ToLower(p.Name)
		pc := c.peers[key]
		if pc == nil || pc.src.Link != p.Link {
			pc = &Collector{src: Source{Name: c.src.Name + "/" + p.Name, Version: c.src.Version, Link: p.Link, Mux: p.Mux, Driver: p.Driver,
				Line: p.Line, LineNow: p.LineNow, Serial: p.Serial},
				started: c.started, pid: c.pid, interval: c.interval, idle: c.idle}
			c.peers[key] = pc
		}
		c.mu.Unlock()
		return pc.Snapshot(), nil
	}
	return Status{}, fmt.Errorf("no peer %q on the hub", name)
}
