package control

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Render writes the status as the table `sockmux status` shows.
func Render(w io.Writer, s *Status) error {
	if s.Hub {
		return renderHub(w, s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sockmux link %q  pid %d  version %s\n", s.Name, s.PID, s.Version)
	peer := s.Peer
	if peer == "" {
		peer = "-"
	}
	fmt.Fprintf(&b, "state      %s", s.State)
	if s.State == "up" {
		fmt.Fprintf(&b, " for %s", dur(s.UpSeconds))
	}
	fmt.Fprintf(&b, "   (process uptime %s)\n", dur(s.UptimeSeconds))
	mem := "-"
	if s.RSSBytes > 0 {
		mem = size(s.RSSBytes)
		if s.RSSPeak {
			mem += " (peak)"
		}
	}
	fmt.Fprintf(&b, "process    %d goroutines, %s resident\n", s.Goroutines, mem)
	fmt.Fprintf(&b, "session    local %s  peer %s\n", s.Local, peer)
	fmt.Fprintf(&b, "transport  %s", s.Transport)
	if s.Device != "" && !strings.Contains(s.Transport, s.Device) {
		fmt.Fprintf(&b, " (device %s)", s.Device)
	}
	b.WriteString("\n")
	if s.Line != "" {
		fmt.Fprintf(&b, "line       %s\n", s.Line)
	}
	renderSerial(&b, s.Serial)
	fmt.Fprintf(&b, "rtt        %s\n", (time.Duration(s.RTTSeconds * float64(time.Second))).Round(10*time.Microsecond))
	fmt.Fprintf(&b, "sent       %s on the line, %s payload, goodput %s/s\n", size(s.BytesOut), size(s.PayloadOut), size(uint64(s.GoodputOut)))
	fmt.Fprintf(&b, "received   %s on the line, %s payload, goodput %s/s\n", size(s.BytesIn), size(s.PayloadIn), size(uint64(s.GoodputIn)))
	fmt.Fprintf(&b, "compressed %s\n", compression(s.PayloadOut, s.CompressedOut, s.PayloadIn, s.CompressedIn))
	if s.FEC != nil {
		fmt.Fprintf(&b, "fec        %s\n", fecLine(s.FEC))
	}
	fmt.Fprintf(&b, "frames     %d out, %d in, %d resent, %d dropped (bad), %d duplicate\n", s.FramesOut, s.FramesIn, s.FramesResent, s.FramesBad, s.FramesDup)
	fmt.Fprintf(&b, "events     %d transports opened, %d sessions, %d resumes, %d auth failures, %d preemptions\n",
		s.TransportOpens, s.Sessions, s.Resumes, s.AuthFailures, s.Preemptions)
	fmt.Fprintf(&b, "\n%d open streams\n", len(s.Streams))
	if len(s.Streams) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tDIR\tENTRANCE\tDESTINATION\tCLIENT\tSENT\tRECEIVED\tAGE")
		for _, st := range s.Streams {
			dir, dest, client := "out", st.Dest, st.Client
			if st.Inbound {
				dir = "in"
			}
			if dest == "" {
				dest = "(far end decides)"
			}
			if client == "" {
				client = "-"
			}
			entrance := fmt.Sprintf("%d/%s", st.Entrance, st.Network)
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.ID, dir, entrance, dest, client, size(st.BytesOut), size(st.BytesIn), dur(st.AgeSeconds))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Escape sequences of a redraw: cursor home, clear to the end of the line,
// clear to the end of the screen.
const (
	CursorHome = "\x1b[H"
	ClearLine  = "\x1b[K"
	ClearBelow = "\x1b[J"
)

// Frame turns a rendered status into one redraw of a terminal screen:
// the cursor goes home, each line overwrites the old one and clears what
// is left of it, and the rest of the screen is cleared. Nothing is blanked
// first, so the screen does not flicker.
func Frame(text string) string {
	var b strings.Builder
	b.WriteString(CursorHome)
	for line := range strings.Lines(text) {
		b.WriteString(strings.TrimSuffix(line, "\n"))
		b.WriteString(ClearLine + "\n")
	}
	b.WriteString(ClearBelow)
	return b.String()
}

// size formats a byte count.
func size(n uint64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 10<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 10<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// dur formats seconds as a short duration.
func dur(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	case d >= time.Minute:
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// compression describes the compression ratio each way: the payload
// bytes before compression over the bytes on the line for them.
func compression(plainOut, wireOut, plainIn, wireIn uint64) string {
	way := func(plain, wire uint64) string {
		if wire == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx (%s to %s)", float64(plain)/float64(wire), size(plain), size(wire))
	}
	return "out " + way(plainOut, wireOut) + ", in " + way(plainIn, wireIn)
}

// renderHub writes a hub's status: the process, the sums, and a line for
// each peer.
func renderHub(w io.Writer, s *Status) error {
	var b strings.Builder
	up := 0
	for _, p := range s.Peers {
		if p.State == "up" {
			up++
		}
	}
	fmt.Fprintf(&b, "sockmux hub %q  pid %d  version %s\n", s.Name, s.PID, s.Version)
	label, listens := "ports     ", strings.HasPrefix(s.Transport, "tcp ")
	if listens {
		label = "listen    "
	}
	fmt.Fprintf(&b, "%s %s   (process uptime %s)\n", label, s.Transport, dur(s.UptimeSeconds))
	mem := "-"
	if s.RSSBytes > 0 {
		mem = size(s.RSSBytes)
		if s.RSSPeak {
			mem += " (peak)"
		}
	}
	fmt.Fprintf(&b, "process    %d goroutines, %s resident\n", s.Goroutines, mem)
	if listens {
		fmt.Fprintf(&b, "peers      %d up of %d; %d connections refused (no name or an unknown one)\n", up, len(s.Peers), s.Refused)
	} else {
		fmt.Fprintf(&b, "peers      %d up of %d\n", up, len(s.Peers))
	}
	fmt.Fprintf(&b, "sent       %s on the line, %s payload, goodput %s/s\n", size(s.BytesOut), size(s.PayloadOut), size(uint64(s.GoodputOut)))
	fmt.Fprintf(&b, "received   %s on the line, %s payload, goodput %s/s\n", size(s.BytesIn), size(s.PayloadIn), size(uint64(s.GoodputIn)))
	fmt.Fprintf(&b, "events     %d sessions, %d resumes, %d auth failures\n\n", s.Sessions, s.Resumes, s.AuthFailures)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSTATE\tUP\tRTT\tSENT\tRECEIVED\tSTREAMS\tTRANSPORT")
	for _, p := range s.Peers {
		upFor := "-"
		if p.State == "up" {
			upFor = dur(p.UpSeconds)
		}
		rtt := (time.Duration(p.RTTSeconds * float64(time.Second))).Round(10 * time.Microsecond)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", p.Name, p.State, upFor, rtt, size(p.BytesOut), size(p.BytesIn), p.Streams, p.Transport)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n(sockmux status PEER shows one peer in full)\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// fecLine describes the FEC stage in a line of status.
func fecLine(f *FEC) string {
	if !f.Peer {
		return "offered; the peer reads no FEC blocks, so frames go as they are"
	}
	code := func(t int, ber float64, who string) string {
		if t == 0 {
			return "off"
		}
		s := fmt.Sprintf("corrects %d bytes a block", t)
		if ber > 0 {
			s += fmt.Sprintf(" (BER %.1e measured by %s)", ber, who)
		}
		return s
	}
	return fmt.Sprintf("sending %s; receiving %s; %d bytes corrected, %d of %d blocks lost",
		code(f.TOut, f.BEROut, "the peer"), code(f.TIn, f.BERIn, "this end"), f.Corrected, f.Uncorrectable, f.BlocksIn)
}
