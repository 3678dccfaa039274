//go:build linux

package bench

// The hub rows (issue 17): one hub process (the real binary, --listen
// --peers) and many named peers, the peers being ends in this process (a
// thousand processes would not fit the machine) but for the one that is
// killed and restarted, which is the real binary. SOCKMUX_BENCH_ONLY=^hub$
// runs just this section.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/tcpdriver"
)

// hubResult is the hub section's measures.
type hubResult struct {
	Peers           int
	Up              int           // peers up at the idle measure
	UpIn            time.Duration // for all of them to come up
	BaseRSS         memUse        // a hub with one peer
	BuiltRSS        memUse        // the hub with every peer built, none connected
	IdleRSS         memUse        // every peer connected, idle
	IdleWall        time.Duration
	IdleCPU         time.Duration
	Streams         int // asked for
	StreamsOK       int // opened, and a byte each way
	StreamsIn       time.Duration
	Echoers         int
	IdleP99         time.Duration // echo p99 with the hub otherwise idle
	FloodP99        time.Duration // the same while one peer floods
	FloodRate       float64       // bytes per second the flooding peer got
	Back            time.Duration // restarted peer: from its start to up at the hub
	OthersDisturbed int           // other peers that left "up" or reopened meanwhile
}

func (r *hubResult) perPeer() int64 {
	return (r.IdleRSS.RSS - r.BaseRSS.RSS) / int64(r.Peers)
}

// hubPeers is the number of peers of the idle, streams and restart rows.
func (s *suite) hubPeers() int {
	if s.quick {
		return 200
	}
	return 1000
}

// hubKey writes a peers file of n peers and the key of each, and returns
// the keys by name.
func (s *suite) hubPeersFile(path string, names []string) (map[string][]byte, error) {
	keys := map[string][]byte{}
	var b strings.Builder
	for _, n := range names {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		keys[n] = k
		fmt.Fprintf(&b, "%s %s\n", n, hex.EncodeToString(k))
	}
	return keys, os.WriteFile(path, []byte(b.String()), 0o600)
}

// freeAddr is a loopback address on a free port (freePort: outside the
// ephemeral range, which the hub's thousands of connections draw from).
func freeAddr() (string, error) {
	p, err := freePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}

// serveEcho echoes every connection to ln. It copies through a buffer of
// its own: io.Copy from a TCP connection to itself splices through a pipe,
// two more descriptors for each of ten thousand connections.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 512)
			_, _ = io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
		}()
	}
}

// echoP99 runs echoers, each a stream to echo over its own peer sending one
// byte and waiting for it every 20 ms for d, and returns the p99 of all
// round trips.
func echoP99(eps []*endpoint.Endpoint, echo string, d time.Duration) (time.Duration, error) {
	var mu sync.Mutex
	var samples []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, len(eps))
	for _, ep := range eps {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			st, err := ep.Mux.Open(ctx, mux.Info{Network: "tcp", Dest: echo})
			cancel()
			if err != nil {
				errs <- err
				return
			}
			defer st.Close()
			var b [1]byte
			var mine []time.Duration
			end := time.Now().Add(d)
			for time.Now().Before(end) {
				t0 := time.Now()
				if _, err := st.Write([]byte{'x'}); err != nil {
					errs <- err
					return
				}
				_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(st, b[:]); err != nil {
					errs <- err
					return
				}
				mine = append(mine, time.Since(t0))
				time.Sleep(20 * time.Millisecond)
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return 0, err
	}
	sortDurations(samples)
	return percentile(samples, 99), nil
}

func (s *suite) runHub() (*hubResult, error) {
	n := s.hubPeers()
	r := &hubResult{Peers: n, Echoers: 50, Streams: 10 * n}
	dir := filepath.Join(s.dir, "hub")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("peer-%04d", i))
	}
	peersFile := filepath.Join(dir, "peers")
	keys, err := s.hubPeersFile(peersFile, names)
	if err != nil {
		return nil, err
	}
	// The baseline: a hub with one peer.
	oneFile := filepath.Join(dir, "one")
	if _, err := s.hubPeersFile(oneFile, names[:1]); err != nil {
		return nil, err
	}
	baseAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	base, err := s.start("hub-one-peer", "link", "--listen", baseAddr, "--peers", oneFile, "--control", filepath.Join(dir, "one.sock"), "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	if err := waitListening(baseAddr, 10*time.Second); err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	r.BaseRSS = readMem(base.cmd.Process.Pid)
	base.stop()

	hubAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	hub, err := s.start("hub", "link", "--listen", hubAddr, "--peers", peersFile, "--control", filepath.Join(dir, "hub.sock"), "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	defer hub.stop()
	if err := waitListening(hubAddr, 30*time.Second); err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	r.BuiltRSS = readMem(hub.cmd.Process.Pid)

	echoLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer echoLn.Close()
	go serveEcho(echoLn)
	echo := echoLn.Addr().String()

	// Every peer but the last two (real processes, below: one floods, one
	// is killed and restarted) an end in this process.
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	defer func() { cancel(); running.Wait() }()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	eps := make([]*endpoint.Endpoint, n-2)
	t0 := time.Now()
	for i := range n - 2 {
		ep, err := endpoint.New(endpoint.Options{
			Driver: &tcpdriver.Connector{Addr: hubAddr},
			Link:   link.Config{Name: names[i], Secret: keys[names[i]]},
			Logger: quiet,
		})
		if err != nil {
			return nil, err
		}
		eps[i] = ep
		running.Go(func() { _ = ep.Run(ctx) })
	}
	last := names[n-1]
	keyPath := filepath.Join(dir, last+".key")
	if err := os.WriteFile(keyPath, []byte(hex.EncodeToString(keys[last])+"\n"), 0o600); err != nil {
		return nil, err
	}
	peerArgs := []string{"link", "--connect", hubAddr, "--name", last, "--secret-file", keyPath, "--control", filepath.Join(dir, "last.sock")}
	lastProc, err := s.start("peer-last", peerArgs...)
	if err != nil {
		return nil, err
	}
	// The flooding peer: its -L carries what socat pours into it to a
	// socat sink at the hub, so that neither end of the flood shares a
	// process with the echoers.
	floodName := names[n-2]
	floodKey := filepath.Join(dir, floodName+".key")
	if err := os.WriteFile(floodKey, []byte(hex.EncodeToString(keys[floodName])+"\n"), 0o600); err != nil {
		return nil, err
	}
	floodAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	sinkAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	floodProc, err := s.start("peer-flood", "link", "--connect", hubAddr, "--name", floodName, "--secret-file", floodKey,
		"--control", filepath.Join(dir, "flood.sock"), "-L", floodAddr+":"+sinkAddr)
	if err != nil {
		return nil, err
	}
	defer floodProc.stop()
	upAll := func() int {
		up := 0
		for _, ep := range eps {
			if ep.Link.State() == link.StateUp {
				up++
			}
		}
		return up
	}
	for upAll() < n-2 && time.Since(t0) < 2*time.Minute {
		time.Sleep(50 * time.Millisecond)
	}
	r.UpIn = time.Since(t0)
	if err := waitLog(lastProc, "link up", 30*time.Second); err != nil {
		return r, err
	}
	if err := waitLog(floodProc, "link up", 30*time.Second); err != nil {
		return r, err
	}
	r.Up = upAll() + 2

	// Idle: memory and CPU with every peer connected and keepalives only.
	settle := 5 * time.Second
	r.IdleWall = 30 * time.Second
	if s.quick {
		r.IdleWall = 10 * time.Second
	}
	time.Sleep(settle)
	c0 := hub.cpuTime()
	time.Sleep(r.IdleWall)
	r.IdleCPU = hub.cpuTime() - c0
	r.IdleRSS = readMem(hub.cmd.Process.Pid)
	s.logf("    %d peers up in %v; hub RSS %s with one peer, %s with %d built, %s with all connected: %d KiB per peer; idle CPU %.2f %% of a core",
		r.Up, r.UpIn.Round(time.Millisecond), r.BaseRSS, r.BuiltRSS, n, r.IdleRSS, r.perPeer()>>10, 100*r.IdleCPU.Seconds()/r.IdleWall.Seconds())

	// Streams: ten per peer, all open at once, a byte each way on each.
	var ok atomic.Int64
	var held sync.Mutex
	var open []*mux.Stream
	var wg sync.WaitGroup
	t1 := time.Now()
	sem := make(chan struct{}, 512)
	for i, ep := range eps {
		k := 10
		if i == 0 {
			k += 10 * (n - len(eps)) // the process peers' share: 10 a peer in all
		}
		for range k {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				octx, ocancel := context.WithTimeout(ctx, time.Minute)
				st, err := ep.Mux.Open(octx, mux.Info{Network: "tcp", Dest: echo})
				ocancel()
				if err != nil {
					return
				}
				held.Lock()
				open = append(open, st)
				held.Unlock()
				var b [1]byte
				_ = st.SetReadDeadline(time.Now().Add(time.Minute))
				if _, err := st.Write([]byte{1}); err == nil {
					if _, err := io.ReadFull(st, b[:]); err == nil {
						ok.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	r.Streams = 10 * n
	r.StreamsOK = int(ok.Load())
	r.StreamsIn = time.Since(t1)
	for _, st := range open {
		st.Close()
	}
	s.logf("    %d of %d streams opened with a byte each way, all open at once, in %v", r.StreamsOK, r.Streams, r.StreamsIn.Round(time.Millisecond))

	// Interactive echo on 50 peers, with the hub otherwise idle, then
	// while another peer floods.
	echoD := 15 * time.Second
	if s.quick {
		echoD = 5 * time.Second
	}
	echoers := eps[1 : 1+r.Echoers]
	if r.IdleP99, err = echoP99(echoers, echo, echoD); err != nil {
		return r, fmt.Errorf("echo, idle hub: %w", err)
	}
	sink, err := s.startCmd("socat-sink", "socat", "-u", "TCP-LISTEN:"+strings.TrimPrefix(sinkAddr, "127.0.0.1:")+",bind=127.0.0.1,reuseaddr,fork", "OPEN:/dev/null")
	if err != nil {
		return r, err
	}
	defer sink.stop()
	if err := waitListening(sinkAddr, 10*time.Second); err != nil {
		return r, err
	}
	if err := waitListening(floodAddr, 10*time.Second); err != nil {
		return r, err
	}
	source, err := s.startCmd("socat-source", "socat", "-u", "OPEN:/dev/zero", "TCP:"+floodAddr)
	if err != nil {
		return r, err
	}
	hubSock := filepath.Join(dir, "hub.sock")
	payloadIn := func() uint64 {
		out, _ := exec.Command(s.bin, "status", "--json", "--control", hubSock, floodName).Output()
		var st struct {
			PayloadIn uint64 `json:"payload_in"`
		}
		_ = json.Unmarshal(out, &st)
		return st.PayloadIn
	}
	time.Sleep(time.Second)
	f0, ft := payloadIn(), time.Now()
	r.FloodP99, err = echoP99(echoers, echo, echoD)
	r.FloodRate = float64(payloadIn()-f0) / time.Since(ft).Seconds()
	source.stop()
	if err != nil {
		return r, fmt.Errorf("echo, while a peer floods: %w", err)
	}
	s.logf("    echo p99 over %d peers: %v with the hub idle, %v while one peer floods at %.0f MB/s", r.Echoers, r.IdleP99, r.FloodP99, r.FloodRate/1e6)

	// Kill and restart: the last peer, a process of its own.
	opens := make([]uint64, len(eps))
	for i, ep := range eps {
		opens[i] = ep.Link.Stats().TransportOpens.Load()
	}
	_ = lastProc.cmd.Process.Kill()
	<-lastProc.done
	time.Sleep(500 * time.Millisecond)
	restart := time.Now()
	again, err := s.start("peer-last-again", peerArgs...)
	if err != nil {
		return r, err
	}
	if err := waitLog(again, "link up", 30*time.Second); err != nil {
		return r, err
	}
	r.Back = time.Since(restart)
	again.stop()
	for i, ep := range eps {
		if ep.Link.State() != link.StateUp || ep.Link.Stats().TransportOpens.Load() != opens[i] {
			r.OthersDisturbed++
		}
	}
	s.logf("    peer killed and restarted: up again %v after its restart (the process's own start included); %d other peers disturbed", r.Back.Round(time.Millisecond), r.OthersDisturbed)
	return r, nil
}

// waitLog waits until p's log holds text.
func waitLog(p *proc, text string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(p.logPath)
		if strings.Contains(string(b), text) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %q in its log after %v:\n%s", p.name, text, timeout, p.logTail(10))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runHubSection runs the hub section of the suite.
func (s *suite) runHubSection() {
	s.section("hub", func() error {
		r, err := s.runHub()
		s.hub = r
		return err
	})
}

// hubRows are the hub rows of the report.
func (s *suite) hubRows(failed func(name, section, target string) bool) []row {
	const idleName = "hub: peers connected over TCP loopback, idle with keepalive (issue 17)"
	if failed(idleName, "hub", "all up; ≤ 64 KiB a peer; ≤ 2 % CPU") || s.hub == nil {
		return nil
	}
	r := s.hub
	var rows []row
	cpu := 100 * r.IdleCPU.Seconds() / r.IdleWall.Seconds()
	rows = append(rows, row{fmt.Sprintf("hub: %d peers connected over TCP loopback, idle with keepalive", r.Peers),
		fmt.Sprintf("%d up; %d KiB resident a peer (%.1f MiB in all); %.2f %% of a core idle", r.Up, r.perPeer()>>10, float64(r.IdleRSS.RSS)/(1<<20), cpu),
		fmt.Sprintf("a hub with one peer: %.1f MiB", float64(r.BaseRSS.RSS)/(1<<20)), "",
		"all up; ≤ 64 KiB a peer; ≤ 2 % CPU", verdict(r.Up == r.Peers && r.perPeer() <= 64<<10 && cpu <= 2)})
	rows = append(rows, row{fmt.Sprintf("hub: %d streams across those peers, a byte each way on each", r.Streams),
		fmt.Sprintf("%d usable, all open at once, in %v", r.StreamsOK, r.StreamsIn.Round(time.Millisecond)), "", "", "all usable", verdict(r.StreamsOK == r.Streams)})
	ratio := float64(r.FloodP99) / float64(max(r.IdleP99, 1))
	rows = append(rows, row{fmt.Sprintf("hub: one peer floods (%.0f MB/s) while %d others echo", r.FloodRate/1e6, r.Echoers),
		fmt.Sprintf("echo p99 %s", ms(r.FloodP99)), fmt.Sprintf("idle hub: %s", ms(r.IdleP99)), fmt.Sprintf("%.2f", ratio), "≤ 1.5", verdict(ratio <= 1.5)})
	rows = append(rows, row{"hub: a peer killed and restarted",
		fmt.Sprintf("up %v after its restart; %d others disturbed", r.Back.Round(time.Millisecond), r.OthersDisturbed), "", "",
		"others see nothing; back within 2 s", verdict(r.OthersDisturbed == 0 && r.Back <= 2*time.Second)})
	return rows
}
