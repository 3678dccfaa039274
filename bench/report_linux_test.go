//go:build linux

package bench

// The suite's report: one table, printed and written into
// docs/benchmarks.md between markers, with the details and profiles.

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

type row struct {
	name, sockmux, baseline, ratio, target, result string
}

func (s *suite) rowsTable() []row {
	var rows []row
	failed := func(name, section, target string) bool {
		if err := s.errs[section]; err != nil {
			msg := strings.SplitN(err.Error(), "\n", 2)[0]
			rows = append(rows, row{name, "error: " + msg, "", "", target, "**not measured**"})
			return true
		}
		return false
	}

	// Serial bulk rows.
	for _, c := range s.serialCases() {
		key := serialKey(c)
		name := fmt.Sprintf("bulk goodput, virtual cable %d 8N1, clean line", c.Baud)
		target, want := "≥ 0.95", 0.95
		switch {
		case c.Latency > 0:
			name = fmt.Sprintf("bulk goodput, virtual cable %d 8N1, USB latency timer %d ms at both ends", c.Baud, c.Latency)
		case c.BER > 0:
			name = fmt.Sprintf("bulk goodput, virtual cable %d 8N1, BER %g", c.Baud, c.BER)
			target, want = "≥ 0.90", 0.90
		case c.Baud == 115200:
			target, want = "≥ 0.97", 0.97
		}
		if failed(name, "serial "+key, target) {
			continue
		}
		r := s.serial[key]
		if r == nil {
			continue
		}
		got, raw := median(r.Sockmux), r.rawRate()
		rows = append(rows, row{
			name,
			fmt.Sprintf("%.0f B/s", got),
			fmt.Sprintf("raw bytes through the same cable: %.0f B/s (nominal %.0f)", raw, r.Nominal),
			fmt.Sprintf("%.3f (%.3f of nominal; %s)", got/raw, got/r.Nominal, framing(c.Baud).allows(c.BER)),
			target, verdict(got/raw >= want),
		})
	}

	// Echo, on the plain cable and through USB adapters' latency timers.
	for _, ec := range []struct{ name, key string }{
		{"1-byte echo round trip while a bulk download fills the 115200 link", "115200"},
		{"1-byte echo round trip while a bulk download fills the 115200 link, USB latency timer 16 ms at both ends", "115200 latency 16ms"},
	} {
		echoName := ec.name
		if failed(echoName, "serial "+ec.key, "p99 ≤ 60 ms") {
			continue
		}
		if r := s.serial[ec.key]; r != nil && r.Echo != nil {
			e := r.Echo
			lp50, lp99 := percentile(e.Loaded, 50), percentile(e.Loaded, 99)
			ip50, ip99 := percentile(e.Idle, 50), percentile(e.Idle, 99)
			rows = append(rows, row{
				echoName,
				fmt.Sprintf("p50 %s, p99 %s, max %s (%d samples at typing pace)", ms(lp50), ms(lp99), ms(e.Loaded[len(e.Loaded)-1]), len(e.Loaded)),
				fmt.Sprintf("idle link: p50 %s, p99 %s, max %s", ms(ip50), ms(ip99), ms(e.Idle[len(e.Idle)-1])),
				fmt.Sprintf("p50 ×%.1f, p99 ×%.1f", float64(lp50)/float64(ip50), float64(lp99)/float64(ip99)),
				"p99 ≤ 60 ms", verdict(lp99 <= 60*time.Millisecond),
			})
		}
	}

	// TCP, library level.
	const one, many = "one stream over TCP loopback (link+mux, library level)", "64 concurrent streams over TCP loopback, aggregate"
	if !failed(one, "tcp", "≥ 1.10 × yamux") && len(s.tcp) > 0 {
		ry, sm, ya := s.tcpRatio("streams=1/sockmux", "streams=1/yamux")
		rr, _, raw := s.tcpRatio("streams=1/sockmux", "streams=1/raw")
		rows = append(rows, row{one,
			fmt.Sprintf("%.0f MB/s", sm),
			fmt.Sprintf("yamux %.0f MB/s; raw TCP %.0f MB/s", ya, raw),
			fmt.Sprintf("%.2f × yamux; %.2f × raw", ry, rr),
			"≥ 1.10 × yamux; report × raw", verdict(ry >= 1.10)})
		ry, sm, ya = s.tcpRatio("streams=64/sockmux", "streams=64/yamux")
		rr, _, raw = s.tcpRatio("streams=64/sockmux", "streams=64/raw")
		rows = append(rows, row{many,
			fmt.Sprintf("%.0f MB/s", sm),
			fmt.Sprintf("yamux %.0f MB/s; raw TCP, 64 connections, %.0f MB/s", ya, raw),
			fmt.Sprintf("%.2f × yamux; %.2f × raw", ry, rr),
			"≥ 1.10 × yamux", verdict(ry >= 1.10)})
	}

	// FIFO.
	const fifoName = "FIFO pair, one stream (link+mux, library level)"
	if !failed(fifoName, "fifo", "≥ 0.5") && s.fifo != nil {
		got, cat := median(s.fifo.Library), median(s.fifo.Cat)
		rows = append(rows, row{fifoName,
			fmt.Sprintf("%.0f MB/s", got/1e6),
			fmt.Sprintf("cat relaying through the same FIFO pair: %.0f MB/s", cat/1e6),
			fmt.Sprintf("%.2f", got/cat), "≥ 0.5", verdict(got/cat >= 0.5)})
		got = median(s.fifo.Sockmux)
		rows = append(rows, row{"FIFO pair, whole program: two link processes, a download through -L",
			fmt.Sprintf("%.0f MB/s", got/1e6),
			fmt.Sprintf("cat relaying through the same FIFO pair: %.0f MB/s", cat/1e6),
			fmt.Sprintf("%.2f", got/cat), "report (TCP hops at both ends, see the details)", "reported"})
	}

	// Idle streams.
	const idleName = "10,000 concurrent open idle streams"
	if !failed(idleName, "idle", "≤ 8 KiB per stream, all usable") && len(s.idle) > 0 {
		var per []float64
		usable, streams := s.idle[0].Usable, s.idle[0].Streams
		for _, r := range s.idle {
			per = append(per, r.BytesBoth)
			usable, streams = min(usable, r.Usable), r.Streams
		}
		b := median(per)
		rows = append(rows, row{idleName,
			fmt.Sprintf("%.2f KiB per stream for both ends together (≈ %.2f KiB per end); %d of %d usable afterwards (library level, MaxStreams raised: the binary's default limit is %d streams)", b/1024, b/2048, usable, streams, mux.DefaultMaxStreams),
			"—", "—", "≤ 8 KiB per stream, all still usable", verdict(b <= 8192 && usable == streams)})
	}

	// CPU.
	const cpuName = "CPU time per MiB moved at 115200 baud"
	if !failed(cpuName, "serial 115200", "report") {
		if r := s.serial["115200"]; r != nil && r.CPUBytes > 0 {
			mib := float64(r.CPUBytes) / (1 << 20)
			a, b := r.CPU["link A (receives)"], r.CPU["link B (sends)"]
			share := func(d time.Duration) float64 { return 100 * d.Seconds() / r.CPUWall.Seconds() }
			rows = append(rows, row{cpuName,
				fmt.Sprintf("receiving end %.0f ms/MiB (%.0f wake-ups/s), sending end %.0f ms/MiB (%.0f wake-ups/s)",
					a.Seconds()*1000/mib, float64(r.Switches["link A (receives)"])/r.CPUWall.Seconds(),
					b.Seconds()*1000/mib, float64(r.Switches["link B (sends)"])/r.CPUWall.Seconds()),
				"—",
				fmt.Sprintf("%.2f %% and %.2f %% of one core at the line rate", share(a), share(b)),
				"report; a tiny fraction of a core", "reported"})
		}
	}

	// Encryption.
	const encName = "TCP loopback, one stream, with and without encryption (link.Config.Secret, library level)"
	if !failed(encName, "tcp", "report") && len(s.tcp) > 0 {
		r, sec, plain := s.tcpRatio("streams=1/sockmux+secret", "streams=1/sockmux")
		rows = append(rows, row{encName,
			fmt.Sprintf("%.0f MB/s encrypted", sec),
			fmt.Sprintf("%.0f MB/s without", plain),
			fmt.Sprintf("%.2f", r), "report", "reported"})
	}
	const e2eName = "TCP loopback, whole program: two link processes, one connection through -L"
	if !failed(e2eName, "tcp-e2e", "report") && s.tcpE2E != nil {
		got, direct := median(s.tcpE2E.Sockmux), median(s.tcpE2E.Direct)
		rows = append(rows, row{e2eName,
			fmt.Sprintf("%.0f MB/s", got/1e6),
			fmt.Sprintf("the same download straight from the source: %.0f MB/s", direct/1e6),
			fmt.Sprintf("%.2f", got/direct), "report (not in issue 6)", "reported"})
		if len(s.tcpE2E.Secret) > 0 {
			sec := median(s.tcpE2E.Secret)
			rows = append(rows, row{"the same with --secret-file",
				fmt.Sprintf("%.0f MB/s", sec/1e6), fmt.Sprintf("without: %.0f MB/s", got/1e6),
				fmt.Sprintf("%.2f", sec/got), "report", "reported"})
		}
	}
	rows = append(rows, s.compareRows(failed)...)
	rows = append(rows, s.compressRows(failed)...)
	rows = append(rows, s.lightRows(failed)...)
	rows = append(rows, s.halfDuplexRows(failed)...)
	rows = append(rows, s.fecRows(failed)...)
	rows = append(rows, s.hubRows(failed)...)
	rows = append(rows, s.autoBaudRows(failed)...)
	return rows
}

func tableMarkdown(rows []row) string {
	var b strings.Builder
	b.WriteString("| benchmark | sockmux | baseline, same run | ratio | target | result |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.name, r.sockmux, r.baseline, r.ratio, r.target, r.result)
	}
	return b.String()
}

func (s *suite) machine() string {
	model, cores := cpuModel()
	return fmt.Sprintf("%s, %s UTC; CPU %s, %d cores (GOMAXPROCS %d); %s linux/%s, kernel %s; code %s; load average %s at the start, %s at the end; %s",
		s.started.UTC().Format("2006-01-02"), s.started.UTC().Format("15:04"), model, cores, runtime.GOMAXPROCS(0),
		runtime.Version(), runtime.GOARCH, kernel(), s.code+"; binary: "+s.binVersion, s.load0, loadAvg(),
		map[bool]string{true: "quick or partial run", false: "full run"}[s.quick || s.only != nil])
}

const (
	markBegin       = "<!-- bench:begin: generated by make bench; edits between bench:begin and bench:end are overwritten -->"
	markEnd         = "<!-- bench:end -->"
	markSummary     = "<!-- bench:summary -->"
	markSummaryEnd  = "<!-- bench:summary:end -->"
	markPrevious    = "<!-- bench:previous -->"
	markPreviousEnd = "<!-- bench:previous:end -->"
)

func (s *suite) report() {
	rows := s.rowsTable()
	summary := fmt.Sprintf("Run of %s\n\n%s", s.machine(), tableMarkdown(rows))
	fmt.Println()
	fmt.Println(summary)

	var b strings.Builder
	b.WriteString(markBegin + "\n## Latest run\n\n" + markSummary + "\n" + summary + markSummaryEnd + "\n\n")
	b.WriteString(methods)
	b.WriteString(s.details())
	b.WriteString(markEnd + "\n")
	latest := b.String()

	path := os.Getenv("SOCKMUX_BENCH_DOC")
	if path == "" {
		path = filepath.Join("..", "docs", "benchmarks.md")
		if s.quick || s.only != nil {
			// A short or partial run does not replace the table in the docs.
			path = filepath.Join(os.TempDir(), "sockmux-bench-partial.md")
		}
	}
	old, _ := os.ReadFile(path)
	doc := mergeDoc(string(old), latest)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		s.t.Errorf("writing %s: %v", path, err)
		return
	}
	s.logf("written to %s", path)
}

// mergeDoc puts latest into the document between its markers, and the
// summary of the run it replaces under "Previous run". Text outside the
// markers (the analysis) is kept.
func mergeDoc(old, latest string) string {
	between := func(text, a, b string) (string, bool) {
		i := strings.Index(text, a)
		if i < 0 {
			return "", false
		}
		j := strings.Index(text[i:], b)
		if j < 0 {
			return "", false
		}
		return text[i+len(a) : i+j], true
	}
	replace := func(text, a, b, with string) string {
		i := strings.Index(text, a)
		j := strings.Index(text[i:], b) + i
		return text[:i] + with + text[j+len(b):]
	}
	if _, ok := between(old, markBegin, markEnd); !ok {
		return "# Benchmarks\n\n`make bench` measures sockmux against its baselines (issue 6) and rewrites\n" +
			"the part of this file between the bench markers; the previous run's table is kept below it.\n\n" +
			latest + "\n## Previous run\n\n" + markPrevious + "\n(none yet)\n" + markPreviousEnd + "\n"
	}
	prevSummary, _ := between(old, markSummary, markSummaryEnd)
	doc := replace(old, markBegin, markEnd, strings.TrimSuffix(latest, "\n"))
	if _, ok := between(doc, markPrevious, markPreviousEnd); ok && prevSummary != "" {
		doc = replace(doc, markPrevious, markPreviousEnd, markPrevious+"\n"+strings.TrimSpace(prevSummary)+"\n"+markPreviousEnd)
	}
	return doc
}

// methods says how each row is measured.
const methods = `### How each row is measured

- **Goodput is timed at the receiver** everywhere, from the arrival of the first byte to the arrival of
  the last (the bytes of the first read are not counted), and the received data is checked against what
  was sent. Sockmux and its baseline are timed the same way, in the same run.
- **Serial rows**: a real ` + "`sockmux cable --baud N [--ber X --seed 7] A B`" + ` process; the **baseline** opens
  both ends with the serial driver sockmux uses (package serialport) and pushes raw bytes through, no
  framing, once before the links start and once after they stopped (after draining what the line still
  held); the better of the two is the line rate (a run the busy machine slowed would flatter the ratio). Then two ` + "`sockmux link --comm`" + ` processes, one with
  ` + "`-L`" + ` forwards to a bulk source and an echo server on the far side, and a client downloading
  through the forward: data flows from the far end (link B, which dials the source) to the near end
  (link A). CPU time of each process comes from /proc during those transfers, wake-ups from the
  context-switch counts of its threads. "The framing allows" is computed from the link's frame size at
  that rate and the wire format (docs/protocol.md): the ceiling of a line never idle.
- **Echo**: on the 115200 cable, a 1-byte echo through the second forward, 200 samples at typing pace
  (a random 30-130 ms pause between them), first on the idle link, then while a bulk **download** from
  the far side fills the line; then 100 more under load back to back (5-25 ms pauses), in the details. The download is the realistic and the harder case: the echo's reply travels the same
  direction as the bulk data and competes with it, while the request travels against acknowledgements
  only. The echo server stamps each arrival, so each round trip splits into its request and reply legs.
  The **USB latency** rows run the same case on a cable with ` + "`--latency 16`" + `: each end delivers what it
  receives the way an FTDI adapter with its default 16 ms latency timer does (62-byte packets, a short
  one when the timer expires).
- **TCP rows** are library-level Go benchmarks (BenchmarkTCP): link and mux (configured as the binary
  configures them for TCP: 1 MiB stream windows) over the real TCP driver on loopback, both ends in this
  process; hashicorp/yamux with its default configuration over one loopback connection; raw TCP with one
  connection per stream. Each operation writes 32 KiB; 64 streams write concurrently. Every benchmark
  runs once per repetition, the repetitions interleaved, and each ratio is the median of the per-repetition
  ratios. The same benchmarks run alone with ` + "`go test -bench . ./bench/`" + `.
- **Whole program against yamux and ssh** (section tcp-compare): two ` + "`sockmux link`" + ` processes over one
  TCP loopback connection, link A forwarding a port with ` + "`-L`" + ` to the bulk source, against two
  bench/yamuxfwd processes of the same shape (hashicorp/yamux v0.1.2, default configuration, one stream per
  forwarded connection, the far end dialing the target); with ` + "`--secret-file`" + ` against ` + "`ssh -N -L`" + ` with
  ` + "`-c aes128-gcm@openssh.com`" + ` to a private sshd on a loopback port (its own host key, config and
  authorized_keys in a temporary directory). One connection downloads 512 MiB; 64 connections download a
  64th each at once, timed from the first first byte to the last last byte. The systems take turns within
  each repetition; each ratio is the median of the per-repetition ratios.
- **FIFO pair**: the baseline is ` + "`cat <a2b >b2a`" + ` relaying through the two FIFOs (this process writes a2b
  and reads b2a), alternating with the library-level row: link and mux of both ends in this process, each
  over the pipe driver ` + "`--commin/--commout`" + ` uses, one stream written in 32 KiB chunks (the FIFO row's
  counterpart of the TCP rows). Then, reported apart, two ` + "`sockmux link --commin/--commout`" + ` processes
  over the same FIFOs and a download through a ` + "`-L`" + ` forward: that path adds a TCP connection at each
  end and crosses four processes, so each byte is copied about nine times against cat's four.
- **Idle streams**: library level, both ends in this process over TCP loopback: 10,000 streams opened and
  accepted, then the live heap and goroutine stacks (after two collections) compared with before; then a
  byte each way on every stream.
- **Encryption**: library level, the same one-stream benchmark with link.Config.Secret set on both ends
  (every frame sealed); with the binary's ` + "`--secret-file`" + ` too once it has that flag.
- **Compression rows** (compress_linux_test.go; ` + "`SOCKMUX_BENCH_ONLY=^compress`" + ` runs just them): on a cable of
  their own, two ` + "`sockmux link`" + ` processes with default flags download a corpus of text nobody here wrote
  (384 KiB at 115200, 96 KiB at 9600: half Go's net/http source, a quarter /var/log logs, a quarter Go's JSON
  test data) through a ` + "`-L`" + ` forward, checked byte for byte; the ratio in the sockmux column is the sending
  link's, from its status. The baseline is OpenSSH on the same cable: sshd (a throwaway host and user key)
  behind ` + "`socat FILE:ttyB,raw`" + `, and ` + "`ssh -C -o Compression=yes -L`" + ` whose ProxyCommand is socat on ttyA,
  the same corpus through its forward (the line is drained both ways first). Random bytes: one download of
  20 s of line time (a second would repeat the first's bytes), with default flags and then with
  ` + "`--compress off`" + ` at both ends, against raw bytes through the cable. The echo row is the echo test above
  with the text source as the bulk download. TCP: two link processes over loopback, a 512 MiB download
  with default flags and with ` + "`--compress off`" + `, three pairs, the order alternating.
- **Small-device rows** (issue 20, light_linux_test.go; ` + "`SOCKMUX_BENCH_ONLY=^light`" + ` runs just them): on a
  cable of their own at 115200 and at 921600, two ` + "`sockmux link`" + ` processes with default flags, linked; first
  30 s with nothing to carry (CPU from /proc/PID/stat, wake-ups as the context switches of all threads from
  /proc/PID/task/*/status, resident memory from /proc/PID/status at the end: VmRSS, of which RssAnon is the
  process's own and RssFile the binary's pages mapped), then a download of 20 s of line time through a ` + "`-L`" + `
  forward, CPU per MiB and wake-ups per second of each end over it. The anchor: the links stopped, sshd behind
  ` + "`socat FILE:ttyB,raw`" + ` and ` + "`ssh -o Compression=no -L`" + ` through socat on ttyA carry the same download; CPU of
  ssh with its socat, of sshd with its session processes, and of the far socat, added up.
- **Profiles**: each sockmux TCP benchmark again under the CPU profiler for a few seconds, and the heap
  profile's allocations over the same time (pprof -base).

`

// details are the figures behind each row, and the profiles.
func (s *suite) details() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("### Details of this run\n")
	p("- **Load average** (1, 5, 15 min; the machine is shared) as each part started: %s.", strings.Join(s.loads, "; "))
	for _, c := range s.serialCases() {
		r := s.serial[serialKey(c)]
		if r == nil {
			continue
		}
		p("- **Cable %s**: raw baseline %s B/s (before and after the links ran; nominal %.0f); sockmux transfers of %.0f s of line time each: %s B/s.",
			serialKey(c), floats(r.Raw, "%.0f"), r.Nominal, c.BulkSecs, floats(r.Sockmux, "%.0f"))
		if r.CableNote != "" {
			p("  The cable's summary: %s.", r.CableNote)
		}
		if r.BulkLink != nil {
			p("  Link B during the bulk transfers (its control socket): %v.", r.BulkLink)
		}
		if r.SessionLink != nil {
			p("  Link B over the whole session: %v.", r.SessionLink)
		}
		if r.LineBA > 0 {
			p("  Over the whole session link B put %d bytes on the line towards the client, and %d of them (%.3f) arrived there as data: the rest is framing, acknowledgements and anything sent twice.",
				r.LineBA, r.AppBA, float64(r.AppBA)/float64(r.LineBA))
		}
		f := framing(c.Baud)
		p("  Framing at this rate as configured (link.DefaultConfig; the link may send shorter frames while interactive traffic is about, and size them to the loss rate): %d-byte payloads (%.0f ms of line each), %d-frame window; per frame %.1f bytes of link framing (header, CRC, COBS, delimiter) and %d of mux header, so full frames allow at most %.3f of the line.",
			f.payload, f.frameTime.Seconds()*1000, f.window, f.linkOverhead, f.muxHeader, f.ceiling)
		if len(r.CPU) > 0 && r.CPUBytes > 0 {
			var parts []string
			for _, k := range []string{"link A (receives)", "link B (sends)", "cable"} {
				parts = append(parts, fmt.Sprintf("%s %v (%.0f wake-ups/s)", k, r.CPU[k].Round(time.Millisecond), float64(r.Switches[k])/r.CPUWall.Seconds()))
			}
			p("  CPU time while %.0f KiB moved in %v: %s.", float64(r.CPUBytes)/1024, r.CPUWall.Round(time.Millisecond), strings.Join(parts, ", "))
		}
		if e := r.Echo; e != nil {
			p("  Echo, idle link: p50 %s, p90 %s, p99 %s, max %s. Under load: p50 %s, p90 %s, p99 %s, max %s; the bulk download ran at %.0f B/s (%.2f of the raw line rate) meanwhile.",
				ms(percentile(e.Idle, 50)), ms(percentile(e.Idle, 90)), ms(percentile(e.Idle, 99)), ms(e.Idle[len(e.Idle)-1]),
				ms(percentile(e.Loaded, 50)), ms(percentile(e.Loaded, 90)), ms(percentile(e.Loaded, 99)), ms(e.Loaded[len(e.Loaded)-1]),
				e.BulkRate, e.BulkRate/r.rawRate())
			leg := func(d []time.Duration) string {
				if len(d) == 0 {
					return "—"
				}
				return fmt.Sprintf("p50 %s, p99 %s, max %s", ms(percentile(d, 50)), ms(percentile(d, 99)), ms(d[len(d)-1]))
			}
			p("  The two legs of each round trip (timed at the echo server, in this process): idle, request %s; reply %s. Under load, request (A→B, against acknowledgements only) %s; reply (B→A, behind the bulk download) %s.",
				leg(e.IdleReq), leg(e.IdleReply), leg(e.LoadedReq), leg(e.LoadedReply))
			p("  Round trips under load by 10 ms: %s.", histogram(e.Loaded, 10*time.Millisecond))
			if len(e.Rapid) > 0 {
				p("  Back to back (%d-%d ms pauses, %d samples) under load: p50 %s, p99 %s, max %s; by 10 ms: %s.",
					rapidPause[0], rapidPause[1], len(e.Rapid), ms(percentile(e.Rapid, 50)), ms(percentile(e.Rapid, 99)), ms(e.Rapid[len(e.Rapid)-1]),
					histogram(e.Rapid, 10*time.Millisecond))
			}
		}
	}
	for _, r := range s.serialLib {
		p("- **Serial, library level** (link and mux in this process over a cable at %d baud, the same download, the sending link's counters): %v.", r.Baud, r)
	}
	if s.fifo != nil {
		p("- **FIFO pair**: cat %s MB/s; link+mux (library) %s MB/s; whole program %s MB/s. CPU while the whole program moved the data: %v.", floats(scale(s.fifo.Cat, 1e-6), "%.0f"), floats(scale(s.fifo.Library, 1e-6), "%.0f"), floats(scale(s.fifo.Sockmux, 1e-6), "%.0f"), s.fifo.CPU)
	}
	if s.tcpE2E != nil {
		p("- **TCP, whole program**: direct %s MB/s; through two link processes %s MB/s. CPU meanwhile: %v.",
			floats(scale(s.tcpE2E.Direct, 1e-6), "%.0f"), floats(scale(s.tcpE2E.Sockmux, 1e-6), "%.0f"), s.tcpE2E.CPU)
		if len(s.tcpE2E.Secret) > 0 {
			p("  With --secret-file: %s MB/s; CPU %v.", floats(scale(s.tcpE2E.Secret, 1e-6), "%.0f"), s.tcpE2E.SecretCPU)
		} else {
			p("  The binary has no `link --secret-file` yet: encryption is measured at the library level only.")
		}
	}
	if d := s.compareDetails(); d != "" {
		b.WriteString(d)
	}
	for i, r := range s.idle {
		p("- **Idle streams, run %d**: %d streams opened and accepted in %v; %.0f B live heap and %.0f B stacks per stream (both ends); %.3f goroutines per stream; %d usable (a byte each way on every stream took %v).",
			i+1, r.Streams, r.Open.Round(time.Millisecond), r.HeapBoth, r.BytesBoth-r.HeapBoth, r.GoroutinesPer, r.Usable, r.Check.Round(time.Millisecond))
	}
	if len(s.tcpOrder) > 0 {
		p("- **TCP benchmarks** (median of %d, MB/s; allocations per 32 KiB operation, both ends):", len(s.tcp[s.tcpOrder[0]]))
		for _, name := range s.tcpOrder {
			rs := s.tcp[name]
			var v []float64
			for _, r := range rs {
				v = append(v, mbps(r))
			}
			last := rs[len(rs)-1]
			extra := ""
			if f, ok := last.Extra["frames/op"]; ok {
				extra = fmt.Sprintf("; %.2f frames per 32 KiB written, %.0f payload bytes per frame", f, last.Extra["payload-B/frame"])
			}
			p("  - %s: %.0f (runs: %s); %d B/op, %d allocs/op%s", name, median(v), floats(v, "%.0f"), last.AllocedBytesPerOp(), last.AllocsPerOp(), extra)
		}
	}
	p("")
	if len(s.profiles) > 0 {
		p("### Where the CPU time goes (TCP rows, pprof)\n")
		p("Each profile is one more run of the benchmark (both ends are in the process) under the CPU profiler; CPU-ms per MB counts both ends and does not depend on how busy the machine is the way throughput does. Share of the CPU samples by where the function is:\n")
		header := "| where |"
		sep := "|---|"
		for _, pr := range s.profiles {
			header += fmt.Sprintf(" %s (%.0f MB/s; %.2f CPU-ms per MB) |", pr.name, pr.mbps, pr.total.Seconds()*1000/(pr.bytes/1e6))
			sep += "---|"
		}
		p("%s\n%s", header, sep)
		seen := map[string]bool{}
		var cats []string
		for _, pr := range s.profiles {
			for _, c := range pr.categories {
				if !seen[c.name] {
					seen[c.name] = true
					cats = append(cats, c.name)
				}
			}
		}
		for _, c := range cats {
			line := "| " + c + " |"
			for _, pr := range s.profiles {
				v := 0.0
				for _, pc := range pr.categories {
					if pc.name == c {
						v = pc.pct
					}
				}
				line += fmt.Sprintf(" %.1f %% |", v)
			}
			p("%s", line)
		}
		p("\nThe same by stage of the data path: cumulative share of the samples in each function and what it calls (stages nest, so they do not add up):\n")
		p("%s\n%s", header, sep)
		for _, st := range stages {
			line := "| " + st.label + " |"
			found := false
			for _, pr := range s.profiles {
				v := pr.cum(st.fn)
				found = found || v > 0
				line += fmt.Sprintf(" %.1f %% |", v)
			}
			if found {
				p("%s", line)
			}
		}
		for _, pr := range s.profiles {
			if !pr.listed {
				continue
			}
			p("\nTop of the CPU profile, %s (%v of samples in %v; flat %%, cumulative %%):\n", pr.name, pr.total.Round(10*time.Millisecond), pr.wall.Round(100*time.Millisecond))
			p("```")
			for i, l := range pr.top {
				if i == 20 {
					break
				}
				p("%6.2f%% %6.2f%%  %s", l.flat, l.cum, l.name)
			}
			p("```")
			p("\nWhere it allocated (pprof alloc_space over the profiled runs, set-up included: %.0f MiB in all; flat flat%% sum%% cum cum%%):\n", pr.allocTotal/(1<<20))
			p("```")
			for _, l := range pr.allocTop {
				p("%s", l)
			}
			p("```")
		}
		p("")
	}
	if len(s.tcpOrder) > 0 {
		p("<details><summary>benchstat input (every repetition)</summary>\n")
		p("```")
		for _, name := range s.tcpOrder {
			for _, r := range s.tcp[name] {
				p("BenchmarkTCP/%s-%d\t%s\t%s", name, runtime.GOMAXPROCS(0), r.String(), r.MemString())
			}
		}
		p("```\n</details>\n")
	}
	return b.String()
}

// frameCost is what framing costs on a serial line, from the link's
// configuration and the wire protocol (docs/protocol.md): a DATA frame is
// COBS(type seq:2 ack:2 payload CRC:4) 0x00, and the payload carries mux
// DATA messages (type, stream id, length).
type frameCost struct {
	rate            int // bytes per second
	payload, window int
	frameTime       time.Duration
	linkOverhead    float64
	muxHeader       int
	wire            float64 // bytes of a full data frame on the line
	ceiling         float64
}

// allows says what the framing, and at a bit error rate the frames lost
// to it (each retransmitted once, the line never idle), leave of the line.
func (f frameCost) allows(ber float64) string {
	if ber == 0 {
		return fmt.Sprintf("full frames allow %.3f", f.ceiling)
	}
	// With bit errors a frame is lost with probability 1-(1-ber)^bits:
	// the best fixed payload trades header cost against losses.
	best, bestP, bestLost := 0.0, 0, 0.0
	for p := 64; p <= f.payload; p++ {
		c := frameFor(f.rate, p)
		ok := math.Pow(1-ber, 8*c.wire)
		if e := c.ceiling * ok; e > best {
			best, bestP, bestLost = e, p, 1-ok
		}
	}
	return fmt.Sprintf("at best, with %d-byte payloads of which %.1f %% are lost, frames allow %.3f", bestP, 100*bestLost, best)
}

// framing is the cost of full frames at a baud rate, as the link
// configures them (link.DefaultConfig).
func framing(baud int) frameCost {
	rate := baud / 10
	cfg := link.DefaultConfig(link.Config{}, link.Properties{LineRate: rate})
	f := frameFor(rate, cfg.MaxPayload)
	f.window = cfg.Window
	return f
}

// frameFor is the cost of a data frame with a payload of size bytes.
func frameFor(rate, size int) frameCost {
	body := float64(1 + 2 + 2 + size + 4)
	// COBS on random data: a code byte opens the frame, and another each
	// time 254 bytes in a row hold no 0x00 (a 0x00 ends a block but is
	// replaced by the next code, not added); then the delimiter.
	wire := body + 1 + body/254*math.Pow(255.0/256, 254) + 1
	muxHeader := 1 + 1 + uvarintLen(size) // one DATA message of a low-numbered stream
	return frameCost{
		rate:         rate,
		payload:      size,
		frameTime:    time.Duration(wire / float64(rate) * float64(time.Second)),
		linkOverhead: wire - float64(size),
		muxHeader:    muxHeader,
		wire:         wire,
		ceiling:      float64(size-muxHeader) / wire,
	}
}

func uvarintLen(v int) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// stages are the functions that mark the stages of the data path.
var stages = []struct{ label, fn string }{
	{"mux: Stream.Write (the writer hands its data over)", "github.com/sockmux/sockmux/mux.(*Stream).Write"},
	{"mux: Fill (stream data copied into a frame)", "github.com/sockmux/sockmux/mux.(*Mux).Fill"},
	{"link: the sender (writeLoop: pacing, picking, encoding, writing)", "github.com/sockmux/sockmux/link.(*conn).writeLoop"},
	{"link: cobsEncode", "github.com/sockmux/sockmux/link.cobsEncode"},
	{"link: sealing with the key (authState.seal)", "github.com/sockmux/sockmux/link.(*authState).seal"},
	{"write system calls (poll.FD.Write)", "internal/poll.(*FD).Write"},
	{"link: the receiver (readLoop)", "github.com/sockmux/sockmux/link.(*conn).readLoop"},
	{"read system calls (poll.FD.Read)", "internal/poll.(*FD).Read"},
	{"link: frameReader.next (splitting, decoding, checking)", "github.com/sockmux/sockmux/link.(*frameReader).next"},
	{"link: cobsDecode", "github.com/sockmux/sockmux/link.cobsDecode"},
	{"link: opening with the key (authState.open)", "github.com/sockmux/sockmux/link.(*authState).open"},
	{"CRC-32C (crc32.Update)", "hash/crc32.Update"},
	{"mux: Deliver (frames parsed, data copied to the stream)", "github.com/sockmux/sockmux/mux.(*Mux).Deliver"},
	{"mux: Stream.Read (the reader copies data out)", "github.com/sockmux/sockmux/mux.(*Stream).Read"},
	{"yamux: Stream.Write", "github.com/hashicorp/yamux.(*Stream).Write"},
	{"yamux: Session.recvLoop", "github.com/hashicorp/yamux.(*Session).recvLoop"},
	{"yamux: Stream.Read", "github.com/hashicorp/yamux.(*Stream).Read"},
	{"allocation (mallocgc)", "runtime.mallocgc"},
	{"garbage collection (gcBgMarkWorker)", "runtime.gcBgMarkWorker"},
	{"scheduler (schedule)", "runtime.schedule"},
}

// cum is the cumulative share of the samples in fn (0 if absent).
func (p profile) cum(fn string) float64 {
	for _, l := range p.top {
		if strings.TrimSuffix(l.name, " (inline)") == fn {
			return l.cum
		}
	}
	return 0
}

// histogram counts sorted samples in buckets of width w: "0-10 ms: 3, ...",
// empty buckets left out.
func histogram(sorted []time.Duration, w time.Duration) string {
	var parts []string
	for i := 0; i < len(sorted); {
		b := sorted[i] / w
		j := i
		for j < len(sorted) && sorted[j]/w == b {
			j++
		}
		parts = append(parts, fmt.Sprintf("%d-%d ms: %d", b*w/time.Millisecond, (b+1)*w/time.Millisecond, j-i))
		i = j
	}
	return strings.Join(parts, ", ")
}

func floats(v []float64, format string) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, fmt.Sprintf(format, x))
	}
	return strings.Join(parts, ", ")
}

func scale(v []float64, k float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x * k
	}
	return out
}
