package control

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// RenderTest writes a link test's summary, as sockmux test-link prints it.
func RenderTest(w io.Writer, r *TestResult) error {
	var b strings.Builder
	how := "upload, then download"
	if r.Both {
		how = "upload and download at once"
	}
	fmt.Fprintf(&b, "link test of %q: %.1f s (%s) over %s\n", r.Name, r.Seconds, how, r.Transport)
	if r.LineRate > 0 {
		line := r.Line
		if line == "" {
			line = "the line"
		}
		fmt.Fprintf(&b, "line       %s: %s each way before framing\n", line, Rate(float64(r.LineRate)))
	}
	far := r.Far != nil
	dir := func(label string, d Direction, f Frames, damaged, resent bool) {
		fmt.Fprintf(&b, "%-10s %s (%.0f B/s", label, Rate(d.Goodput), d.Goodput)
		if r.LineRate > 0 {
			fmt.Fprintf(&b, ", %.1f%% of the line", 100*d.Goodput/float64(r.LineRate))
		}
		fmt.Fprintf(&b, ")  %s in %.1f s\n", size(d.Bytes), d.Seconds)
		fmt.Fprintf(&b, "%-10s %d frames", "", f.Sent)
		if damaged {
			fmt.Fprintf(&b, ", %d damaged (%.2f%%)", f.Damaged, 100*ratio(f.Damaged, f.Sent))
		}
		if resent {
			fmt.Fprintf(&b, ", %d resent (%.2f%%)", f.Resent, 100*ratio(f.Resent, f.Sent))
		}
		b.WriteByte('\n')
	}
	dir("upload", r.Upload, r.UploadFrames, far, true)
	dir("download", r.Download, r.DownloadFrames, true, far)
	rtt := func(label string, s RTTStats) {
		if s.Samples == 0 {
			fmt.Fprintf(&b, "%-10s -\n", label)
			return
		}
		fmt.Fprintf(&b, "%-10s %s (min %s, max %s; %d round trips)\n", label, ms(s.Avg), ms(s.Min), ms(s.Max), s.Samples)
	}
	rtt("rtt idle", r.RTTIdle)
	rtt("rtt loaded", r.RTTLoaded)
	cut := r.Preemptions
	if far {
		cut += r.Far.Preemptions
	}
	if cut > 0 {
		fmt.Fprintf(&b, "%-10s %d frames cut short on purpose for the round trips are not counted as damaged\n", "", cut)
	}
	if !far {
		fmt.Fprintf(&b, "%-10s the far end did not tell its counters: damage upward and resends downward unknown\n", "")
	}
	fmt.Fprintf(&b, "compressed %s\n", compression(r.PayloadOut, r.CompressedOut, r.PayloadIn, r.CompressedIn))
	if r.FEC != nil {
		fmt.Fprintf(&b, "fec        %s\n", fecLine(r.FEC))
	}
	if r.Resumes > 0 {
		fmt.Fprintf(&b, "resumes    %d during the test\n", r.Resumes)
	}
	fmt.Fprintf(&b, "verdict    %s\n", Verdict(r))
	_, err := io.WriteString(w, b.String())
	return err
}

// Verdict says in a sentence what a link test found.
func Verdict(r *TestResult) string {
	slow := min(r.Upload.Goodput, r.Download.Goodput)
	switch {
	case r.Resumes > 0:
		return "the transport broke and the link resumed during the test: a loose cable, a flaky adapter or connection"
	case r.UploadFrames.LossRatio() > 0.01 || r.DownloadFrames.LossRatio() > 0.01:
		return "frames are being lost or damaged: check the cable and its ground, both ends' --baud, or try a lower --baud"
	case r.LineRate > 0 && !r.Both && slow < 0.7*float64(r.LineRate):
		return "slower than the line's rate with no loss: check that both ends use the same --baud and --flow, and the hosts' load"
	case r.UploadFrames.Damaged+r.UploadFrames.Resent+r.DownloadFrames.Damaged+r.DownloadFrames.Resent > 0:
		return "usable: a few frames were repaired"
	}
	return "clean: no frame lost or damaged"
}

// Rate formats bytes per second.
func Rate(bps float64) string {
	switch {
	case bps >= 1<<20:
		return fmt.Sprintf("%.1f MiB/s", bps/(1<<20))
	case bps >= 1<<10:
		return fmt.Sprintf("%.1f KiB/s", bps/(1<<10))
	}
	return fmt.Sprintf("%.0f B/s", bps)
}

// ms formats seconds as a duration rounded for reading.
func ms(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
