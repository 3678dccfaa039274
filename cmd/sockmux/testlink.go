package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/control"
)

func testLinkCommand() *cli.Command {
	return &cli.Command{
		Name:      "test-link",
		Usage:     "measure a running link end to end: goodput each way, round-trip time, lost and damaged frames",
		UsageText: "sockmux test-link [--name NAME | --control PATH] [--seconds S] [--both] [--json]",
		Description: `Asks a running sockmux link, through its control socket, to measure its link
to the far end: a few small echo round trips, then an upload to the far end
and a download from it for half of --seconds each (or both at once with
--both), with echo round trips alongside. The far end's sockmux serves the
test itself (it only drops, makes or echoes bytes), so nothing else needs to
run. The link's traffic goes on meanwhile, and slows the test down.

The summary shows goodput each way (payload bytes per second that arrived,
and the share of the line's rate on a serial line), round-trip times idle
and under load, and this end's frame counters over the test: frames resent
(lost or damaged on the way out) and frames damaged on the way in. Use it to
choose a baud rate (the highest whose test is clean) or to spot a bad cable.`,
		Flags: append(controlFlags(),
			&cli.Float64Flag{Name: "seconds", Aliases: []string{"s"}, Value: control.DefaultTestSeconds,
				Usage: fmt.Sprintf("how long the test runs in all (%d to %d)", control.MinTestSeconds, control.MaxTestSeconds)},
			&cli.BoolFlag{Name: "both", Usage: "measure upload and download at the same time instead of one after the other"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON (and no progress)"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q", c.Args().First())
			}
			opts := control.TestOptions{Seconds: c.Float64("seconds"), Both: c.Bool("both")}
			if err := opts.Check(); err != nil {
				return err
			}
			path, err := socketPath(c.String("control"), c.String("name"))
			if err != nil {
				return err
			}
			cl, err := control.Dial(path, 5*time.Second)
			if err != nil {
				return err
			}
			defer cl.Close()
			var progress func(control.TestProgress)
			var bar *progressBar
			if !c.Bool("json") {
				bar = newProgressBar(os.Stdout, isTerminal(os.Stdout))
				progress = bar.update
			}
			res, err := cl.TestLink(opts, progress)
			if bar != nil {
				bar.done()
			}
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(res)
			}
			return control.RenderTest(os.Stdout, res)
		},
	}
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar shows a link test's progress: on a terminal a bar redrawn in
// place, elsewhere a plain line once a second.
type progressBar struct {
	w     io.Writer
	tty   bool
	drawn bool
	last  time.Time
	phase string
}

func newProgressBar(w io.Writer, tty bool) *progressBar { return &progressBar{w: w, tty: tty} }

const barWidth = 30

func (p *progressBar) update(tp control.TestProgress) {
	frac := 0.0
	if tp.Total > 0 {
		frac = min(1, max(0, tp.Elapsed/tp.Total))
	}
	var rates []string
	if tp.Up > 0 || tp.Phase == "upload" || tp.Phase == "both" {
		rates = append(rates, "up "+control.Rate(tp.Up))
	}
	if tp.Down > 0 || tp.Phase == "download" || tp.Phase == "both" {
		rates = append(rates, "down "+control.Rate(tp.Down))
	}
	what := tp.Phase
	if len(rates) > 0 {
		what += "  " + strings.Join(rates, "  ")
	}
	if p.tty {
		n := int(frac * barWidth)
		fmt.Fprintf(p.w, "\r[%s%s] %3.0f%%  %4.1f/%.0f s  %s\x1b[K",
			strings.Repeat("#", n), strings.Repeat(".", barWidth-n), 100*frac, tp.Elapsed, tp.Total, what)
		p.drawn = true
		return
	}
	// Plain lines: one a second, and one at each new phase.
	if tp.Phase == p.phase && time.Since(p.last) < time.Second {
		return
	}
	p.phase, p.last = tp.Phase, time.Now()
	fmt.Fprintf(p.w, "test-link: %3.0f%%  %4.1f/%.0f s  %s\n", 100*frac, tp.Elapsed, tp.Total, what)
}

// done ends the bar's line so that the summary starts on a clean one.
func (p *progressBar) done() {
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
