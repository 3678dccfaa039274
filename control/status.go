package control

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/sockmux/sockmux/dgwire"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/serialport"
)

// Status is a snapshot of a link end, as `sockmux status --json` prints it.
type Status struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	// State is the link's state as link.State names it: up, waiting,
	// handshake, closed, and whatever else the link comes to tell apart.
	State     string `json:"state"`
	Local     string `json:"local_session"`
	Peer      string `json:"peer_session"` // empty while no session
	Transport string `json:"transport"`
	// Device is the device node a serial transport opened last, e.g.
	// /dev/ttyUSB1 for --comm usb:0403:6001:A10K3ZP; empty for other
	// transports.
	Device  string    `json:"device,omitempty"`
	Line    string    `json:"line"` // line settings, e.g. "115200 8N1 flow none"
	Started time.Time `json:"started"`
	// UptimeSeconds is how long the process has run; UpSeconds how long
	// the link has been up without a break (0 while it is not).
	UptimeSeconds float64 `json:"uptime_seconds"`
	UpSeconds     float64 `json:"up_seconds"`
	RTTSeconds    float64 `json:"rtt_seconds"`

	// Goroutines is the process's goroutine count; RSSBytes its resident
	// memory (0: unknown here), the peak so far when RSSPeak (macOS, BSD).
	Goroutines int    `json:"goroutines"`
	RSSBytes   uint64 `json:"rss_bytes"`
	RSSPeak    bool   `json:"rss_peak,omitempty"`

	BytesOut   uint64 `json:"bytes_out"`   // written to transports, framing included
	BytesIn    uint64 `json:"bytes_in"`    // read from transports
	PayloadOut uint64 `json:"payload_out"` // payload sent (first transmissions)
	PayloadIn  uint64 `json:"payload_in"`  // payload delivered
	// CompressedOut and CompressedIn are the same payloads as they
	// crossed the line: after compression, before decompression.
	// PayloadOut/CompressedOut is the compression ratio of what was sent.
	CompressedOut uint64 `json:"compressed_out"`
	CompressedIn  uint64 `json:"compressed_in"`
	// Goodput is payload bytes per second over the last sampling
	// interval: since the previous snapshot or sample at least a second
	// before this one (the collector samples once a second while payload
	// moves, and every idleSample while it does not).
	GoodputOut float64 `json:"goodput_out"`
	GoodputIn  float64 `json:"goodput_in"`

	FramesOut      uint64 `json:"frames_out"`
	FramesIn       uint64 `json:"frames_in"`
	FramesResent   uint64 `json:"frames_resent"`
	FramesBad      uint64 `json:"frames_bad"`
	FramesDup      uint64 `json:"frames_dup"`
	TransportOpens uint64 `json:"transport_opens"`
	Sessions       uint64 `json:"sessions"`
	SessionsEnded  uint64 `json:"sessions_ended"`
	Resumes        uint64 `json:"resumes"`
	AuthFailures   uint64 `json:"auth_failures"`
	Preemptions    uint64 `json:"preemptions"`

	// FEC is the forward error correction stage of a serial line's link;
	// absent where the link offers none (TCP, pipes, --fec off).
	FEC *FEC `json:"fec,omitempty"`

	// Serial is a serial port's modem lines and receive error counts;
	// absent on other transports. A part that is not available is nil,
	// with a note saying why, rather than zeros.
	Serial *serialport.LineStatus `json:"serial,omitempty"`

	Streams []Stream `json:"streams"`

	// Hub is set on a hub (--peers): State is "hub", the counters above
	// are the sums over its peers, Streams is empty and Peers lists them.
	Hub   bool         `json:"hub,omitempty"`
	Peers []PeerStatus `json:"peers,omitempty"`
	// Refused counts the connections a hub refused before any peer's
	// link saw them (no name, an unknown name).
	Refused uint64 `json:"refused,omitempty"`
}

// FEC is what the forward error correction stage does (docs/fec.md): the
// code each direction uses, the error rate each end measures on what it
// receives, and what the code repaired.
type FEC struct {
	Peer  bool `json:"peer"`  // the peer reads FEC blocks: the code may be used
	Block int  `json:"block"` // the codeword length we send in
	TOut  int  `json:"t_out"` // bytes a block we send corrects (0: off)
	TIn   int  `json:"t_in"`  // bytes a block we receive corrects (0: off)
	// BERIn is the bit error rate measured on what arrives; BEROut the
	// rate the peer measures on what we send. Both come from the blocks,
	// so they are 0 while the code is off.
	BERIn         float64 `json:"ber_in"`
	BEROut        float64 `json:"ber_out"`
	BlocksIn      uint64  `json:"blocks_in"`     // FEC blocks read
	Corrected     uint64  `json:"corrected"`     // bytes corrected in them
	Uncorrectable uint64  `json:"uncorrectable"` // blocks lost: more wrong bytes than the code corrects
}

// fecStatus reads the link's FEC stage; nil when it offers none.
func fecStatus(l *link.Link) *FEC {
	f := l.FEC()
	if !f.Offered {
		return nil
	}
	st := l.Stats()
	return &FEC{Peer: f.Peer, Block: f.Block, TOut: f.TOut, TIn: f.TIn, BERIn: f.BERIn, BEROut: f.BEROut,
		BlocksIn: st.FECBlocksIn.Load(), Corrected: st.FECCorrected.Load(), Uncorrectable: st.FECUncorrectable.Load()}
}

// PeerStatus is one peer of a hub, as `sockmux status` lists it; `sockmux
// status PEER` shows the peer's link in full (a Status).
type PeerStatus struct {
	Name         string  `json:"name"`
	State        string  `json:"state"`
	Transport    string  `json:"transport"`
	Peer         string  `json:"peer_session"` // empty while no session
	UpSeconds    float64 `json:"up_seconds"`
	RTTSeconds   float64 `json:"rtt_seconds"`
	BytesOut     uint64  `json:"bytes_out"`
	BytesIn      uint64  `json:"bytes_in"`
	PayloadOut   uint64  `json:"payload_out"`
	PayloadIn    uint64  `json:"payload_in"`
	Streams      int     `json:"streams"`
	Sessions     uint64  `json:"sessions"`
	Resumes      uint64  `json:"resumes"`
	AuthFailures uint64  `json:"auth_failures"`
}

// Stream is one open stream.
type Stream struct {
	ID         uint32  `json:"id"`
	Inbound    bool    `json:"inbound"` // opened by the far end
	Network    string  `json:"network"`
	Entrance   int     `json:"entrance"` // the port it entered on, at the opener's end
	Dest       string  `json:"dest"`
	Client     string  `json:"client"`
	BytesIn    uint64  `json:"bytes_in"`  // read from the stream (arrived over the link)
	BytesOut   uint64  `json:"bytes_out"` // written to the stream (sent over the link)
	AgeSeconds float64 `json:"age_seconds"`
}

// Source is what a snapshot is read from.
type Source struct {
	Name    string
	Version string
	Line    string // line settings to show; empty on transports without any
	// LineNow, when set, gives the line settings now instead of Line: a
	// rate that --baud auto changes, and how it was reached.
	LineNow func() string
	Link    *link.Link
	// DeleGate is the layer under the mux instead of Link when the end
	// speaks DeleGate's SockMux (--wire delegate; wire.go).
	DeleGate *dgwire.Link
	Mux      *mux.Mux
	Driver   link.Driver

	// Serial, on a serial transport, reads its lines and error counts.
	Serial func() serialport.LineStatus

	// Peers, on a hub, lists its peers (Link, Mux and Driver are then
	// unused); Transport names the hub's listener or ports, and Refused,
	// if set, reads its count of refused connections.
	Peers     func() []PeerSource
	Transport string
	Refused   func() uint64
}

// PeerSource is one peer of a hub, its status read as a Source's.
type PeerSource struct {
	Name   string
	Link   *link.Link
	Mux    *mux.Mux
	Driver link.Driver
	// Line, LineNow and Serial are a serial port's, as Source's are
	// (a hub's port: sockmux link --comm A --comm B); shown when the
	// peer's status is asked for.
	Line    string
	LineNow func() string
	Serial  func() serialport.LineStatus
}

// line is the line settings to show now.
func (s Source) line() string {
	if s.LineNow != nil {
		return s.LineNow()
	}
	return s.Line
}

// Collector takes snapshots of a Source and keeps the goodput samples.
type Collector struct {
	src     Source
	started time.Time
	pid     int

	mu       sync.Mutex
	peers    map[string]*Collector // a hub's, made on first PeerSnapshot
	last     sample
	goodOut  float64
	goodIn   float64
	interval time.Duration // the shortest goodput interval
	idle     time.Duration // the sampling interval while no payload moves
	samples  int           // taken so far
}

// idleSample is how often Run samples while no payload moves: an idle
// link end is left asleep. Goodput over such a stretch is zero anyway;
// once payload moves again, Run samples every interval (a second).
const idleSample = 15 * time.Second

type sample struct {
	at          time.Time
	out, in     uint64
	initialized bool
}

// NewCollector returns a collector for src; pid is reported as the
// process that serves it.
func NewCollector(src Source, pid int) *Collector {
	return &Collector{src: src, started: time.Now(), pid: pid, interval: time.Second, idle: idleSample}
}

// payload is the payload counters goodput is sampled from.
func (c *Collector) payload() (out, in uint64) {
	if c.src.Peers != nil {
		for _, p := range c.src.Peers() {
			st := p.Link.Stats()
			out += st.PayloadOut.Load()
			in += st.PayloadIn.Load()
		}
		return out, in
	}
	return c.linkPayload()
}

// sampleLocked updates the goodput figures once per interval, and reports
// whether payload moved since the previous sample.
func (c *Collector) sampleLocked(now time.Time) (moved bool) {
	c.samples++
	out, in := c.payload()
	if !c.last.initialized {
		c.last = sample{at: now, out: out, in: in, initialized: true}
		return false
	}
	moved = out != c.last.out || in != c.last.in
	if d := now.Sub(c.last.at); d >= c.interval {
		c.goodOut = float64(out-c.last.out) / d.Seconds()
		c.goodIn = float64(in-c.last.in) / d.Seconds()
		c.last = sample{at: now, out: out, in: in, initialized: true}
	}
	return moved
}

// Tick samples the link's goodput and reports whether payload moved
// since the previous sample. Run calls it; Snapshot samples too.
func (c *Collector) Tick() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sampleLocked(time.Now())
}

// Run samples the link until ctx ends: once a second while payload
// moves, so that goodput is current between requests, and every
// idleSample while it does not, so that an idle end sleeps.
func (c *Collector) Run(ctx context.Context) {
	c.Tick()
	t := time.NewTimer(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.Tick() {
			t.Reset(c.interval)
		} else {
			t.Reset(c.idle)
		}
	}
}

// Snapshot returns the link's status now.
func (c *Collector) Snapshot() Status {
	now := time.Now()
	if c.src.Peers != nil {
		return c.snapshotHub(now)
	}
	if c.src.Link == nil {
		return c.snapshotDeleGate(now)
	}
	l := c.src.Link
	state := l.State()
	local, peer := l.Session()
	st := l.Stats()
	s := Status{
		Name:           c.src.Name,
		PID:            c.pid,
		Version:        c.src.Version,
		State:          state.String(),
		Local:          fmt.Sprintf("%016x", local),
		Transport:      c.src.Driver.String(),
		Line:           c.src.line(),
		Started:        c.started,
		UptimeSeconds:  now.Sub(c.started).Seconds(),
		RTTSeconds:     l.RTT().Seconds(),
		BytesOut:       st.BytesOut.Load(),
		BytesIn:        st.BytesIn.Load(),
		PayloadOut:     st.PayloadOut.Load(),
		PayloadIn:      st.PayloadIn.Load(),
		CompressedOut:  st.CompressedOut.Load(),
		CompressedIn:   st.CompressedIn.Load(),
		FramesOut:      st.FramesOut.Load(),
		FramesIn:       st.FramesIn.Load(),
		FramesResent:   st.FramesResent.Load(),
		FramesBad:      st.FramesBad.Load(),
		FramesDup:      st.FramesDup.Load(),
		TransportOpens: st.TransportOpens.Load(),
		Sessions:       st.Sessions.Load(),
		SessionsEnded:  st.SessionsEnded.Load(),
		Resumes:        st.Resumes.Load(),
		AuthFailures:   st.AuthFailures.Load(),
		Preemptions:    st.Preemptions.Load(),
		Streams:        []Stream{},
	}
	s.FEC = fecStatus(l)
	if c.src.Serial != nil {
		ls := c.src.Serial()
		s.Serial = &ls
	}
	s.Goroutines = runtime.NumGoroutine()
	s.RSSBytes, s.RSSPeak = rss()
	if peer != 0 {
		s.Peer = fmt.Sprintf("%016x", peer)
	}
	if dv, ok := c.src.Driver.(interface{ Device() string }); ok {
		s.Device = dv.Device()
	}
	if since := l.UpSince(); state == link.StateUp && !since.IsZero() {
		s.UpSeconds = now.Sub(since).Seconds()
	}
	c.mu.Lock()
	c.sampleLocked(now)
	s.GoodputOut, s.GoodputIn = c.goodOut, c.goodIn
	c.mu.Unlock()
	s.Streams = streams(c.src.Mux, now)
	return s
}

// streams lists m's streams as status shows them, by id.
func streams(m *mux.Mux, now time.Time) []Stream {
	var list []Stream
	for _, st := range m.Streams() {
		info := st.Info()
		in, out := st.Counters()
		list = append(list, Stream{
			ID: st.ID(), Inbound: st.Inbound(), Network: info.Network, Entrance: info.Entrance,
			Dest: info.Dest, Client: info.Client, BytesIn: in, BytesOut: out,
			AgeSeconds: now.Sub(st.Created()).Seconds(),
		})
	}
	slices.SortFunc(list, func(a, b Stream) int { return int(int64(a.ID) - int64(b.ID)) })
	return list
}
