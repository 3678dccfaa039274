//go:build linux

package bench

// The --baud auto row (issue 16 item 5): two sockmux link processes with
// --baud auto over "sockmux cable --max-baud 921600" (the cable starts at
// 115200, follows the rates the ends set and garbles what is sent faster
// than 921600). Each run measures from both ends starting to both having
// verified 921600 both ways, as their logs say. The first run then
// measures a bulk download at the rate found, and a link with a fixed
// --baud 921600 on a cable at 921600 is the baseline for it.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sockmux/sockmux/autobaud"
)

const autoBaudCap = 921600

// autoBaudResult is what the autobaud section measured: per run, the time
// from both ends starting to 921600 verified at both, and to the link up.
type autoBaudResult struct {
	Reach, Up []time.Duration
	Failed    int // runs that did not reach the cap within autoBaudLimit
	// Bulk is a download's rate at the rate found (bytes per second);
	// Fixed the same over --baud 921600 at both ends; 0: not measured.
	Bulk, Fixed float64
}

// autoBaudLimit is how long a run waits for the cap.
const autoBaudLimit = 30 * time.Second

func (s *suite) runAutoBaud() (*autoBaudResult, error) {
	res := &autoBaudResult{}
	runs := 3
	if s.quick {
		runs = 1
	}
	for i := range runs {
		reach, up, err := s.autoBaudRun(i, res)
		if err != nil {
			res.Failed++
			s.logf("    run %d: %v", i+1, err)
			continue
		}
		res.Reach, res.Up = append(res.Reach, reach), append(res.Up, up)
		s.logf("    run %d: link up after %v, %d baud after %v", i+1, up.Round(time.Millisecond), autoBaudCap, reach.Round(time.Millisecond))
	}
	if len(res.Reach) == 0 {
		return res, fmt.Errorf("no run reached %d baud within %v", autoBaudCap, autoBaudLimit)
	}
	fixed, err := s.fixedBaudBulk()
	if err != nil {
		return res, fmt.Errorf("the fixed-rate baseline: %w", err)
	}
	res.Fixed = fixed
	s.logf("    bulk download at the rate found %.0f B/s; with --baud %d at both ends %.0f B/s", res.Bulk, autoBaudCap, res.Fixed)
	return res, nil
}

// autoBaudBulkSecs is the line time of the bulk downloads.
func (s *suite) autoBaudBulkSecs() float64 {
	if s.quick {
		return 4
	}
	return 10
}

// fixedBaudBulk is the bulk download over links with a fixed --baud
// 921600 on a cable at 921600.
func (s *suite) fixedBaudBulk() (float64, error) {
	pathA, pathB := filepath.Join(s.dir, "abfixA"), filepath.Join(s.dir, "abfixB")
	cable, err := s.start("abcable-fixed", "cable", "--baud", fmt.Sprint(autoBaudCap), "--report-every", "0", pathA, pathB)
	if err != nil {
		return 0, err
	}
	defer cable.stop()
	for _, p := range []string{pathA, pathB} {
		if err := waitFile(p, 10*time.Second); err != nil {
			return 0, err
		}
	}
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	for k, path := range []string{pathA, pathB} {
		args := []string{"link", "--comm", path, "--baud", fmt.Sprint(autoBaudCap), "--control", filepath.Join(s.dir, fmt.Sprintf("abfix%c.sock", 'A'+k))}
		if k == 0 {
			args = append(args, "-L", fmt.Sprintf("%d:%s", port, s.srv.bulk.Addr()))
		}
		p, err := s.start(fmt.Sprintf("ablink-fixed-%c", 'A'+k), args...)
		if err != nil {
			return 0, err
		}
		defer p.stop()
	}
	return s.autoBaudDownload(fmt.Sprintf("127.0.0.1:%d", port))
}

// autoBaudDownload waits for the link at addr and times a download.
func (s *suite) autoBaudDownload(addr string) (float64, error) {
	if err := s.srv.waitReady(addr, 30*time.Second); err != nil {
		return 0, err
	}
	secs := s.autoBaudBulkSecs()
	r, err := s.srv.download(addr, int64(secs*autoBaudCap/10), time.Duration(secs*4+30)*time.Second)
	if err != nil {
		return 0, err
	}
	return r.Rate(), nil
}

// autoBaudRun starts a cable and two ends and times the climb.
func (s *suite) autoBaudRun(i int, res *autoBaudResult) (reach, up time.Duration, err error) {
	pathA, pathB := filepath.Join(s.dir, fmt.Sprintf("abtty%dA", i)), filepath.Join(s.dir, fmt.Sprintf("abtty%dB", i))
	cable, err := s.start(fmt.Sprintf("abcable-%d", i), "cable", "--max-baud", fmt.Sprint(autoBaudCap), "--report-every", "0", pathA, pathB)
	if err != nil {
		return 0, 0, err
	}
	defer cable.stop()
	for _, p := range []string{pathA, pathB} {
		if err := waitFile(p, 10*time.Second); err != nil {
			return 0, 0, err
		}
	}
	port, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	var ends []*proc
	for k, path := range []string{pathA, pathB} {
		args := []string{"link", "--comm", path, "--baud", "auto", "--control", filepath.Join(s.dir, fmt.Sprintf("ab%d%c.sock", i, 'A'+k))}
		if k == 0 {
			args = append(args, "-L", fmt.Sprintf("%d:%s", port, s.srv.bulk.Addr()))
		}
		p, err := s.start(fmt.Sprintf("ablink-%d-%c", i, 'A'+k), args...)
		if err != nil {
			return 0, 0, err
		}
		defer p.stop()
		ends = append(ends, p)
	}
	want := fmt.Sprintf("autobaud: %d baud verified both ways", autoBaudCap)
	deadline := t0.Add(autoBaudLimit)
	for {
		upBoth, reached := true, true
		for _, p := range ends {
			log := p.logText()
			upBoth = upBoth && strings.Contains(log, `msg="link up"`)
			reached = reached && strings.Contains(log, want)
		}
		if upBoth && up == 0 {
			up = time.Since(t0)
		}
		if reached {
			reach = time.Since(t0)
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("%d baud not verified at both ends within %v; A's log ends:\n%s", autoBaudCap, autoBaudLimit, ends[0].logTail(8))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if i > 0 {
		return reach, up, nil
	}
	// The bulk download at the rate found, once the rate above it was
	// tried and given up (it garbles the line for 2 s).
	above := fmt.Sprintf("no verified traffic at %d baud", autobaud.Rates[slices.Index(autobaud.Rates, autoBaudCap)+1])
	for !strings.Contains(ends[0].logText(), above) {
		if time.Since(t0) > autoBaudLimit {
			return reach, up, fmt.Errorf("the rate above %d was not tried and given up within %v", autoBaudCap, autoBaudLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if res.Bulk, err = s.autoBaudDownload(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		return reach, up, fmt.Errorf("bulk download at the rate found: %w", err)
	}
	return reach, up, nil
}

// logText is p's log so far.
func (p *proc) logText() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (s *suite) runAutoBaudSection() {
	s.section("autobaud", func() error {
		r, err := s.runAutoBaud()
		s.autoBaud = r
		return err
	})
}

// autoBaudRows is the row of issue 16's --baud auto target.
func (s *suite) autoBaudRows(failed func(name, section, target string) bool) []row {
	name := fmt.Sprintf("--baud auto at both ends on cable --max-baud %d: time from both ends starting to %d verified both ways", autoBaudCap, autoBaudCap)
	if failed(name, "autobaud", "≤ 10 s") || s.autoBaud == nil || len(s.autoBaud.Reach) == 0 {
		return nil
	}
	r := s.autoBaud
	worst := slices.Max(r.Reach)
	var each []string
	for _, d := range r.Reach {
		each = append(each, fmt.Sprintf("%.2f s", d.Seconds()))
	}
	rows := []row{{name,
		fmt.Sprintf("worst %.2f s of %d runs (%s); %d runs failed", worst.Seconds(), len(r.Reach), strings.Join(each, ", "), r.Failed),
		fmt.Sprintf("link up at 115200 after %.2f s (median)", median(durSeconds(r.Up))), "",
		"≤ 10 s", verdict(r.Failed == 0 && worst <= 10*time.Second)}}
	if r.Bulk > 0 && r.Fixed > 0 {
		rows = append(rows, row{fmt.Sprintf("--baud auto at %d, bulk download (frames sized for the start rate)", autoBaudCap),
			fmt.Sprintf("%.0f B/s, intact", r.Bulk), fmt.Sprintf("--baud %d at both ends: %.0f B/s", autoBaudCap, r.Fixed),
			fmt.Sprintf("%.2f", r.Bulk/r.Fixed), "report", "reported"})
	}
	return rows
}

// durSeconds is ds in seconds.
func durSeconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}
