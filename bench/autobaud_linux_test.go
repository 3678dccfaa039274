//go:build linux

package bench

// The --baud auto row (issue 16 item 5): two sockmux link processes with
// --baud auto over "sockmux cable --max-baud 921600" (the cable starts at
// 115200, follows the rates the ends set and garbles what is sent faster
// than 921600). Each run measures from both ends starting to both having
// verified 921600 both ways, as their logs say.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const autoBaudCap = 921600

// autoBaudResult is what the autobaud section measured: per run, the time
// from both ends starting to 921600 verified at both, and to the link up.
type autoBaudResult struct {
	Reach, Up []time.Duration
	Failed    int // runs that did not reach the cap within autoBaudLimit
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
		reach, up, err := s.autoBaudRun(i)
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
	return res, nil
}

// autoBaudRun starts a cable and two ends and times the climb.
func (s *suite) autoBaudRun(i int) (reach, up time.Duration, err error) {
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
	t0 := time.Now()
	var ends []*proc
	for k, path := range []string{pathA, pathB} {
		p, err := s.start(fmt.Sprintf("ablink-%d-%c", i, 'A'+k), "link", "--comm", path, "--baud", "auto",
			"--control", filepath.Join(s.dir, fmt.Sprintf("ab%d%c.sock", i, 'A'+k)))
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
			return time.Since(t0), up, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("%d baud not verified at both ends within %v; A's log ends:\n%s", autoBaudCap, autoBaudLimit, ends[0].logTail(8))
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	return []row{{name,
		fmt.Sprintf("worst %.2f s of %d runs (%s); %d runs failed", worst.Seconds(), len(r.Reach), strings.Join(each, ", "), r.Failed),
		fmt.Sprintf("link up at 115200 after %.2f s (median)", median(durSeconds(r.Up))), "",
		"≤ 10 s", verdict(r.Failed == 0 && worst <= 10*time.Second)}}
}

// durSeconds is ds in seconds.
func durSeconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}
