//go:build linux

package bench

// The noisy-line rows (issue 19): two link processes over the virtual
// cable at 115200 baud with bit errors (or noise bursts), a 64 KiB
// download through -L timed from the client's connect to its last byte,
// checked byte for byte, and a 1-byte echo round trip on the idle link.
// The FEC stage is as the binary runs it by default (--fec auto).

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

const fecBaud = 115200

// fecCase is one row: a bit error rate, or noise bursts.
type fecCase struct {
	name               string
	ber                float64
	burstEvery, burstF time.Duration
	target             float64 // goodput × line
	upWithin           time.Duration
	off                bool // both ends --fec off: the baseline of the clean row
}

func fecCases() []fecCase {
	return []fecCase{
		{name: "clean", target: 0.97},
		{name: "clean, both ends --fec off", off: true},
		{name: "BER 1e-4", ber: 1e-4, target: 0.90},
		{name: "BER 1e-3", ber: 1e-3, target: 0.80},
		{name: "BER 3e-3", ber: 3e-3, target: 0.65},
		{name: "BER 1e-2", ber: 1e-2, target: 0.40, upWithin: 10 * time.Second},
		// 10 % of the time is noise: the target is 0.80 of the other 90 %.
		{name: "noise bursts of 200 ms every 2 s", burstEvery: 2 * time.Second, burstF: 200 * time.Millisecond, target: 0.80 * 0.9},
	}
}

// fecResult is one row's measurement.
type fecResult struct {
	Case     fecCase
	Up       time.Duration // from starting the link processes to the first download through them
	Bytes    int64
	Took     time.Duration // the download: connect to last byte
	Echo     []time.Duration
	FEC      *fecStatus // the receiving end's FEC stage at the end
	Resent   int64      // frames the sending end sent again
	EchoLost int        // echo round trips that did not come back within their time
}

// fecStatus is the "fec" object of sockmux status --json.
type fecStatus struct {
	Peer          bool    `json:"peer"`
	TOut          int     `json:"t_out"`
	TIn           int     `json:"t_in"`
	BERIn         float64 `json:"ber_in"`
	BEROut        float64 `json:"ber_out"`
	BlocksIn      int64   `json:"blocks_in"`
	Corrected     int64   `json:"corrected"`
	Uncorrectable int64   `json:"uncorrectable"`
}

func (r *fecResult) goodput() float64 {
	return float64(r.Bytes) / r.Took.Seconds() / (fecBaud / 10)
}

func (s *suite) runFECSection() {
	s.section("fec", func() error {
		for _, c := range fecCases() {
			r, err := s.runFEC(c)
			if r != nil {
				s.fec = append(s.fec, r)
				f := r.FEC
				if f == nil {
					f = &fecStatus{}
				}
				s.logf("    %-34s up after %v, 64 KiB in %v: %.3f of the line; echo p99 %v; received with t=%d, BER measured %.2g, %d bytes corrected, %d of %d blocks lost; %d frames resent",
					c.name, r.Up.Round(time.Millisecond), r.Took.Round(time.Millisecond), r.goodput(), percentile(r.Echo, 99),
					f.TIn, f.BERIn, f.Corrected, f.Uncorrectable, f.BlocksIn, r.Resent)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
		}
		return nil
	})
}

func (s *suite) runFEC(c fecCase) (*fecResult, error) {
	res := &fecResult{Case: c}
	tag := fmt.Sprintf("fec%d", len(s.fec))
	pathA, pathB := filepath.Join(s.dir, tag+"A"), filepath.Join(s.dir, tag+"B")
	args := []string{"cable", "--baud", strconv.Itoa(fecBaud), "--report-every", "0", "--seed", "11"}
	if c.ber > 0 {
		args = append(args, "--ber", strconv.FormatFloat(c.ber, 'g', -1, 64))
	}
	if c.burstEvery > 0 {
		args = append(args, "--burst-every", c.burstEvery.String(), "--burst-for", c.burstF.String())
	}
	cable, err := s.start("cable-"+tag, append(args, pathA, pathB)...)
	if err != nil {
		return nil, err
	}
	defer cable.stop()
	for _, p := range []string{pathA, pathB} {
		if err := waitFile(p, 10*time.Second); err != nil {
			return nil, err
		}
	}
	bulkPort, err := freePort()
	if err != nil {
		return nil, err
	}
	echoPort, err := freePort()
	if err != nil {
		return nil, err
	}
	baud := strconv.Itoa(fecBaud)
	controlA, controlB := filepath.Join(s.dir, tag+"-A.sock"), filepath.Join(s.dir, tag+"-B.sock")
	t0 := time.Now()
	fecFlag := "auto"
	if c.off {
		fecFlag = "off"
	}
	linkA, err := s.start("link-"+tag+"-A", "link", "--comm", pathA, "--baud", baud, "--control", controlA, "--fec", fecFlag,
		"-L", fmt.Sprintf("%d:%s", bulkPort, s.srv.bulk.Addr()),
		"-L", fmt.Sprintf("%d:%s", echoPort, s.srv.echo.Addr()))
	if err != nil {
		return nil, err
	}
	defer linkA.stop()
	linkB, err := s.start("link-"+tag+"-B", "link", "--comm", pathB, "--baud", baud, "--control", controlB, "--fec", fecFlag)
	if err != nil {
		return nil, err
	}
	defer linkB.stop()
	bulkAddr := fmt.Sprintf("127.0.0.1:%d", bulkPort)
	if err := s.srv.waitReady(bulkAddr, 60*time.Second); err != nil {
		return nil, fmt.Errorf("%w\nlink A:\n%s\nlink B:\n%s", err, linkA.logTail(10), linkB.logTail(10))
	}
	res.Up = time.Since(t0)
	r, err := s.srv.download(bulkAddr, 64<<10, 5*time.Minute)
	if err != nil {
		return res, fmt.Errorf("download: %w\nlink A:\n%s", err, linkA.logTail(10))
	}
	res.Bytes, res.Took = r.Bytes, r.Last.Sub(r.Start)
	res.Echo, res.EchoLost = fecEcho(fmt.Sprintf("127.0.0.1:%d", echoPort), 40)
	if st, err := s.fecStatus(controlA); err == nil {
		res.FEC = st
	}
	if st, err := s.status(controlB); err == nil {
		res.Resent = st.FramesResent
	}
	return res, nil
}

// fecEcho times n 1-byte round trips through the echo forward, one after
// the other, each given 10 s.
func fecEcho(addr string, n int) ([]time.Duration, int) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, n
	}
	defer c.Close()
	var rtts []time.Duration
	lost := 0
	buf := make([]byte, 1)
	for i := range n {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		t := time.Now()
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			return rtts, lost + n - i
		}
		if _, err := c.Read(buf); err != nil || buf[0] != byte(i) {
			return rtts, lost + n - i
		}
		rtts = append(rtts, time.Since(t))
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(rtts)
	return rtts, lost
}

func (s *suite) fecStatus(control string) (*fecStatus, error) {
	out, err := exec.Command(s.bin, "status", "--control", control, "--json").Output()
	if err != nil {
		return nil, err
	}
	var st struct {
		FEC *fecStatus `json:"fec"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, err
	}
	if st.FEC == nil {
		return nil, fmt.Errorf("no fec in the status")
	}
	return st.FEC, nil
}

// fecRows are the rows of issue 19's targets.
func (s *suite) fecRows(failed func(name, section, target string) bool) []row {
	if failed("noisy lines (FEC): 64 KiB download over the virtual cable at 115200", "fec", "see the rows") {
		return nil
	}
	var rows []row
	var off *fecResult
	for _, r := range s.fec {
		if r.Case.off {
			off = r
		}
	}
	for _, r := range s.fec {
		if r.Case.off {
			continue
		}
		g := r.goodput()
		f := r.FEC
		if f == nil {
			f = &fecStatus{}
		}
		target := fmt.Sprintf("≥ %.2f", r.Case.target)
		ok := g >= r.Case.target
		if r.Case.upWithin > 0 {
			target += fmt.Sprintf(", link up within %v", r.Case.upWithin)
			ok = ok && r.Up <= r.Case.upWithin
		}
		baseline := fmt.Sprintf("nominal line rate %d B/s", fecBaud/10)
		if r.Case.ber == 0 && r.Case.burstEvery == 0 && off != nil {
			baseline += fmt.Sprintf("; both ends --fec off: %.3f of the line, echo p99 %s", off.goodput(), ms(percentile(off.Echo, 99)))
		}
		rows = append(rows, row{
			"noisy line at 115200, " + r.Case.name + ": 64 KiB download through -L (connect to last byte), checked byte for byte",
			fmt.Sprintf("%.0f B/s, intact; link up after %v; echo p99 %s (%d lost); received with t=%d, BER measured %.2g; %d bytes corrected, %d of %d blocks lost; %d frames resent",
				float64(r.Bytes)/r.Took.Seconds(), r.Up.Round(100*time.Millisecond), ms(percentile(r.Echo, 99)), r.EchoLost,
				f.TIn, f.BERIn, f.Corrected, f.Uncorrectable, f.BlocksIn, r.Resent),
			baseline,
			fmt.Sprintf("%.3f", g), target, verdict(ok)})
	}
	return rows
}
