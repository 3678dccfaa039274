package control

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sockmux/sockmux/link"
)

// WriteMetrics writes the status in the Prometheus text exposition format
// (version 0.0.4). The format is a few lines of text; writing it here keeps
// the client library and its dependencies out of the binary.
func WriteMetrics(w io.Writer, s *Status) error {
	if s.Hub {
		return writeHubMetrics(w, s)
	}
	var b strings.Builder
	lbl := `{name="` + escapeLabel(s.Name) + `"}`
	metric := func(name, typ, help string, v float64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s%s %s\n", name, help, name, typ, name, lbl, strconv.FormatFloat(v, 'g', -1, 64))
	}
	up := 0.0
	if s.State == "up" {
		up = 1
	}
	metric("sockmux_link_up", "gauge", "1 while the link's session is up, else 0.", up)
	fmt.Fprintf(&b, "# HELP sockmux_link_state The link's state: 1 for the state it is in.\n# TYPE sockmux_link_state gauge\n")
	var states []string
	for _, st := range link.States {
		states = append(states, st.String())
	}
	if s.State != "" && !slices.Contains(states, s.State) {
		states = append(states, s.State) // a state this list does not know yet
	}
	for _, st := range states {
		v := 0
		if s.State == st {
			v = 1
		}
		fmt.Fprintf(&b, "sockmux_link_state{name=\"%s\",state=\"%s\"} %d\n", escapeLabel(s.Name), escapeLabel(st), v)
	}
	metric("sockmux_uptime_seconds", "gauge", "Seconds since the link process started.", s.UptimeSeconds)
	metric("sockmux_link_up_seconds", "gauge", "Seconds the link has been up without a break.", s.UpSeconds)
	metric("sockmux_rtt_seconds", "gauge", "Smoothed round-trip time.", s.RTTSeconds)
	metric("sockmux_bytes_sent_total", "counter", "Bytes written to transports, framing included.", float64(s.BytesOut))
	metric("sockmux_bytes_received_total", "counter", "Bytes read from transports.", float64(s.BytesIn))
	metric("sockmux_payload_sent_total", "counter", "Payload bytes sent (first transmissions).", float64(s.PayloadOut))
	metric("sockmux_payload_received_total", "counter", "Payload bytes delivered.", float64(s.PayloadIn))
	metric("sockmux_payload_compressed_sent_total", "counter", "Payload bytes sent (first transmissions) as they went on the line, after compression.", float64(s.CompressedOut))
	metric("sockmux_payload_compressed_received_total", "counter", "Payload bytes delivered as they came off the line, before decompression.", float64(s.CompressedIn))
	metric("sockmux_goodput_sent_bytes_per_second", "gauge", "Payload sent per second over the last second.", s.GoodputOut)
	metric("sockmux_goodput_received_bytes_per_second", "gauge", "Payload delivered per second over the last second.", s.GoodputIn)
	metric("sockmux_frames_sent_total", "counter", "Frames written.", float64(s.FramesOut))
	metric("sockmux_frames_received_total", "counter", "Good frames read.", float64(s.FramesIn))
	metric("sockmux_frames_resent_total", "counter", "Data frames transmitted again.", float64(s.FramesResent))
	metric("sockmux_frames_bad_total", "counter", "Frames dropped for CRC, COBS or length.", float64(s.FramesBad))
	metric("sockmux_frames_duplicate_total", "counter", "Data frames received twice.", float64(s.FramesDup))
	metric("sockmux_transport_opens_total", "counter", "Transports opened.", float64(s.TransportOpens))
	metric("sockmux_sessions_total", "counter", "Sessions started.", float64(s.Sessions))
	metric("sockmux_resumes_total", "counter", "Sessions continued over a new transport.", float64(s.Resumes))
	metric("sockmux_auth_failures_total", "counter", "Transports dropped because the peer failed authentication.", float64(s.AuthFailures))
	metric("sockmux_preemptions_total", "counter", "Frames cut short for interactive data.", float64(s.Preemptions))
	writeFECMetrics(&b, s.Name, s.FEC)
	writeSerialMetrics(&b, lbl, s.Serial)
	metric("sockmux_goroutines", "gauge", "Goroutines in the link process.", float64(s.Goroutines))
	if s.RSSBytes > 0 && !s.RSSPeak {
		metric("sockmux_resident_memory_bytes", "gauge", "Resident memory of the link process.", float64(s.RSSBytes))
	}
	metric("sockmux_streams_open", "gauge", "Streams open now.", float64(len(s.Streams)))
	_, err := io.WriteString(w, b.String())
	return err
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// MetricsHandler serves /metrics from the collector.
func MetricsHandler(col *Collector) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		st := col.Snapshot()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = WriteMetrics(w, &st)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "sockmux: metrics at /metrics")
	})
	return mux
}

// writeHubMetrics writes a hub's metrics: the link metrics of each peer,
// labelled with the hub's name and the peer's, and the process's.
func writeHubMetrics(w io.Writer, s *Status) error {
	var b strings.Builder
	name := escapeLabel(s.Name)
	family := func(metric, typ, help string, v func(p PeerStatus) float64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, typ)
		for _, p := range s.Peers {
			fmt.Fprintf(&b, "%s{name=\"%s\",peer=\"%s\"} %s\n", metric, name, escapeLabel(p.Name), strconv.FormatFloat(v(p), 'g', -1, 64))
		}
	}
	one := func(metric, typ, help string, v float64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s{name=\"%s\"} %s\n", metric, help, metric, typ, metric, name, strconv.FormatFloat(v, 'g', -1, 64))
	}
	family("sockmux_link_up", "gauge", "1 while the link's session is up, else 0.", func(p PeerStatus) float64 {
		if p.State == "up" {
			return 1
		}
		return 0
	})
	family("sockmux_link_up_seconds", "gauge", "Seconds the link has been up without a break.", func(p PeerStatus) float64 { return p.UpSeconds })
	family("sockmux_rtt_seconds", "gauge", "Smoothed round-trip time.", func(p PeerStatus) float64 { return p.RTTSeconds })
	family("sockmux_bytes_sent_total", "counter", "Bytes written to transports, framing included.", func(p PeerStatus) float64 { return float64(p.BytesOut) })
	family("sockmux_bytes_received_total", "counter", "Bytes read from transports.", func(p PeerStatus) float64 { return float64(p.BytesIn) })
	family("sockmux_payload_sent_total", "counter", "Payload bytes sent (first transmissions).", func(p PeerStatus) float64 { return float64(p.PayloadOut) })
	family("sockmux_payload_received_total", "counter", "Payload bytes delivered.", func(p PeerStatus) float64 { return float64(p.PayloadIn) })
	family("sockmux_sessions_total", "counter", "Sessions started.", func(p PeerStatus) float64 { return float64(p.Sessions) })
	family("sockmux_resumes_total", "counter", "Sessions continued over a new transport.", func(p PeerStatus) float64 { return float64(p.Resumes) })
	family("sockmux_auth_failures_total", "counter", "Transports dropped because the peer failed authentication.", func(p PeerStatus) float64 { return float64(p.AuthFailures) })
	family("sockmux_streams_open", "gauge", "Streams open now.", func(p PeerStatus) float64 { return float64(p.Streams) })
	one("sockmux_hub_peers", "gauge", "Peers of the hub (in its peers file, and its ports).", float64(len(s.Peers)))
	one("sockmux_hub_refused_total", "counter", "Connections the hub refused before any peer's link saw them (no name, an unknown name).", float64(s.Refused))
	one("sockmux_uptime_seconds", "gauge", "Seconds since the link process started.", s.UptimeSeconds)
	one("sockmux_goroutines", "gauge", "Goroutines in the link process.", float64(s.Goroutines))
	if s.RSSBytes > 0 && !s.RSSPeak {
		one("sockmux_resident_memory_bytes", "gauge", "Resident memory of the link process.", float64(s.RSSBytes))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeFECMetrics writes the FEC stage's gauges and counters, when the
// link offers the code.
func writeFECMetrics(b *strings.Builder, name string, f *FEC) {
	if f == nil {
		return
	}
	lbl := `{name="` + escapeLabel(name) + `"}`
	dir := func(metric, typ, help string, out, in float64) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, typ)
		for _, d := range []struct {
			name string
			v    float64
		}{{"out", out}, {"in", in}} {
			fmt.Fprintf(b, "%s{name=\"%s\",direction=\"%s\"} %s\n", metric, escapeLabel(name), d.name, strconv.FormatFloat(d.v, 'g', -1, 64))
		}
	}
	dir("sockmux_fec_correctable_bytes", "gauge", "Bytes a FEC block of each direction corrects now (0: the code is off).", float64(f.TOut), float64(f.TIn))
	dir("sockmux_fec_bit_error_rate", "gauge", "Bit error rate measured on each direction's FEC blocks (out: by the peer).", f.BEROut, f.BERIn)
	for _, m := range []struct {
		name, help string
		v          uint64
	}{
		{"sockmux_fec_blocks_received_total", "FEC blocks read.", f.BlocksIn},
		{"sockmux_fec_corrected_bytes_total", "Bytes the FEC code corrected in what arrived.", f.Corrected},
		{"sockmux_fec_uncorrectable_blocks_total", "FEC blocks lost: more wrong bytes than the code corrects.", f.Uncorrectable},
	} {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s counter\n%s%s %d\n", m.name, m.help, m.name, m.name, lbl, m.v)
	}
}
