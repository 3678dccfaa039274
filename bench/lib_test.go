package bench

// Library-level benchmarks: sockmux's link and mux over TCP loopback, side
// by side with raw TCP and hashicorp/yamux over the same loopback, and the
// memory of many idle streams. They run on every platform:
//
//	go test -run '^$' -bench . -count 6 ./bench/ | tee new.txt; benchstat new.txt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/tcpdriver"
)

// system carries streams between two ends in this process over TCP
// loopback.
type system interface {
	// open returns the two ends of a new stream: what is written to
	// client is read from server, and back.
	open() (client, server net.Conn, err error)
	close()
}

// systemKind names a system and makes one.
type systemKind struct {
	name string
	make func() (system, error)
}

var (
	rawKind     = systemKind{"raw", newRaw}
	yamuxKind   = systemKind{"yamux", newYamux}
	sockmuxKind = systemKind{"sockmux", func() (system, error) { return newSockmux(nil) }}
	secretKind  = systemKind{"sockmux+secret", func() (system, error) { return newSockmux(benchKey()) }}
)

func benchKey() []byte {
	k := make([]byte, link.KeySize)
	for i := range k {
		k[i] = byte(i*7 + 1)
	}
	return k
}

func loopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// raw: every stream is a TCP connection of its own.
type rawSystem struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newRaw() (system, error) {
	ln, err := loopback()
	if err != nil {
		return nil, err
	}
	return &rawSystem{ln: ln}, nil
}

func (r *rawSystem) open() (net.Conn, net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := r.ln.Accept()
		acc <- res{c, err}
	}()
	c, err := net.Dial("tcp", r.ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	a := <-acc
	if a.err != nil {
		c.Close()
		return nil, nil, a.err
	}
	r.mu.Lock()
	r.conns = append(r.conns, c, a.c)
	r.mu.Unlock()
	return c, a.c, nil
}

func (r *rawSystem) close() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

// yamux: one TCP connection, hashicorp/yamux with its default
// configuration (what its users get) on both ends.
type yamuxSystem struct {
	client, server *yamux.Session
}

func newYamux() (system, error) {
	ln, err := loopback()
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	sc := <-acc
	if sc == nil {
		cc.Close()
		return nil, errors.New("yamux: accept failed")
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cs, err := yamux.Client(cc, cfg)
	if err != nil {
		return nil, err
	}
	ss, err := yamux.Server(sc, cfg)
	if err != nil {
		cs.Close()
		return nil, err
	}
	return &yamuxSystem{client: cs, server: ss}, nil
}

func (y *yamuxSystem) open() (net.Conn, net.Conn, error) {
	c, err := y.client.OpenStream()
	if err != nil {
		return nil, nil, err
	}
	s, err := y.server.AcceptStream()
	if err != nil {
		return nil, nil, err
	}
	return c, s, nil
}

func (y *yamuxSystem) close() {
	y.client.Close()
	y.server.Close()
}

// sockmux: link and mux over the real TCP driver (receptor and connector),
// configured as "sockmux link" configures them for a TCP transport.
type sockmuxSystem struct {
	la, lb *link.Link // connector, receptor
	ma, mb *mux.Mux
	cancel context.CancelFunc
	runs   sync.WaitGroup
}

// tcpStreamWindow is the stream window "sockmux link" gives streams on a
// transport without a line rate (endpoint.StreamWindow).
var tcpStreamWindow = endpoint.StreamWindow(link.Properties{Reliable: true})

func newSockmux(secret []byte) (*sockmuxSystem, error) {
	return newSockmuxStreams(secret, 0)
}

// newSockmuxStreams makes a sockmux pair whose muxes admit streams
// streams at once (0: the defaults).
func newSockmuxStreams(secret []byte, streams int) (*sockmuxSystem, error) {
	rec, err := tcpdriver.Listen("127.0.0.1:0", tcpdriver.ListenOptions{})
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.DiscardHandler)
	s := &sockmuxSystem{}
	mcfg := mux.Config{StreamWindow: tcpStreamWindow, Logger: quiet}
	if streams > 0 {
		mcfg.MaxStreams = streams
		// The receive buffer budget (a bound, not an allocation) must
		// admit every stream at its full window.
		mcfg.MaxBuffered = int(min(int64(streams)*int64(tcpStreamWindow), math.MaxInt))
	}
	return s, s.run(&tcpdriver.Connector{Addr: rec.Addr().String()}, rec, mcfg, link.Config{Secret: secret, Logger: quiet})
}

// newSockmuxOver makes a sockmux pair over two given drivers, with the
// stream window sockmux link uses on reliable transports.
func newSockmuxOver(da, db link.Driver) (*sockmuxSystem, error) {
	quiet := slog.New(slog.DiscardHandler)
	s := &sockmuxSystem{}
	return s, s.run(da, db, mux.Config{StreamWindow: tcpStreamWindow, Logger: quiet}, link.Config{Logger: quiet})
}

// run starts both ends (endpoints whose streams the benchmark takes
// itself) and waits until the link is up. The endpoints own the drivers.
func (s *sockmuxSystem) run(da, db link.Driver, mcfg mux.Config, lcfg link.Config) error {
	var eps [2]*endpoint.Endpoint
	for i, d := range []link.Driver{da, db} {
		e, err := endpoint.New(endpoint.Options{Driver: d, Link: lcfg, Mux: mcfg, AcceptStreams: true, Logger: lcfg.Logger})
		if err != nil {
			return err
		}
		eps[i] = e
	}
	s.la, s.lb, s.ma, s.mb = eps[0].Link, eps[1].Link, eps[0].Mux, eps[1].Mux
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, e := range eps {
		s.runs.Add(1)
		go func() {
			defer s.runs.Done()
			_ = e.Run(ctx)
		}()
	}
	for _, m := range []*mux.Mux{s.ma, s.mb} {
		_, up := m.Up()
		select {
		case <-up:
		case <-time.After(10 * time.Second):
			s.close()
			return errors.New("sockmux: the link did not come up in 10s")
		}
	}
	return nil
}

func (s *sockmuxSystem) open() (net.Conn, net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.ma.Open(ctx, mux.Info{Network: "tcp", Dest: "bench:1"})
	if err != nil {
		return nil, nil, err
	}
	srv, err := s.mb.AcceptStream(ctx)
	if err != nil {
		return nil, nil, err
	}
	srv.Accept()
	if srv.ID() != c.ID() {
		return nil, nil, fmt.Errorf("sockmux: accepted stream %d for opened %d", srv.ID(), c.ID())
	}
	return c, srv, nil
}

func (s *sockmuxSystem) close() {
	s.cancel() // each endpoint shuts down and closes its driver
	s.runs.Wait()
}

// chunk is the size of one benchmark operation: one write of it.
const chunk = 32 << 10

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fastRandom returns n pseudo-random bytes from a ChaCha8 stream seeded
// with seed, fast enough to make a serial download's bytes on the fly.
func fastRandom(n int, seed uint64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// runStreams moves b.N chunks from client to server over n concurrent
// streams of a fresh system and reports the aggregate throughput.
func runStreams(b *testing.B, kind systemKind, n int) {
	sys, err := kind.make()
	if err != nil {
		b.Fatal(err)
	}
	defer sys.close()
	pairs := make([][2]net.Conn, n)
	for i := range pairs {
		c, s, err := sys.open()
		if err != nil {
			b.Fatal(err)
		}
		pairs[i] = [2]net.Conn{c, s}
	}
	data := randomBytes(chunk, 1)
	fs, counted := sys.(frameCounter)
	var frames0, payload0 uint64
	if counted {
		frames0, payload0 = fs.frames()
	}
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	deadline := time.Now().Add(2 * time.Minute)
	for i, p := range pairs {
		count := b.N / n
		if i < b.N%n {
			count++
		}
		_ = p[0].SetDeadline(deadline)
		_ = p[1].SetDeadline(deadline)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range count {
				if _, err := p[0].Write(data); err != nil {
					errs <- fmt.Errorf("write: %w", err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk)
			for left := count * chunk; left > 0; {
				k, err := p[1].Read(buf[:min(len(buf), left)])
				left -= k
				if err != nil && left > 0 {
					errs <- fmt.Errorf("read: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatalf("%s, %d streams: %v", kind.name, n, err)
	default:
	}
	if counted {
		frames, payload := fs.frames()
		if frames > frames0 {
			b.ReportMetric(float64(frames-frames0)/float64(b.N), "frames/op")
			b.ReportMetric(float64(payload-payload0)/float64(frames-frames0), "payload-B/frame")
		}
	}
}

// frameCounter is a system that counts the frames its client end sent and
// the payload bytes they carried.
type frameCounter interface {
	frames() (frames, payload uint64)
}

// frames counts what the opening end's link sent: every frame (data, and
// the few acknowledgements of the far end's window updates) and the
// payload of the data frames.
func (s *sockmuxSystem) frames() (uint64, uint64) {
	st := s.la.Stats()
	return st.FramesOut.Load(), st.PayloadOut.Load()
}

// tcpKinds are the systems of the TCP benchmarks, baselines first.
var tcpKinds = []systemKind{rawKind, yamuxKind, sockmuxKind, secretKind}

// BenchmarkTCP: one stream and 64 concurrent streams over TCP loopback,
// aggregate throughput, for raw TCP (one connection per stream), yamux,
// sockmux and sockmux with a pre-shared key (every frame sealed).
func BenchmarkTCP(b *testing.B) {
	for _, n := range []int{1, 64} {
		for _, k := range tcpKinds {
			b.Run(fmt.Sprintf("streams=%d/%s", n, k.name), func(b *testing.B) { runStreams(b, k, n) })
		}
	}
}

// idleResult is what many idle streams cost.
type idleResult struct {
	Streams       int
	Usable        int           // streams that carried a byte each way afterwards
	BytesBoth     float64       // live heap + goroutine stacks per stream, both ends together
	HeapBoth      float64       // of which live heap
	GoroutinesPer float64       // goroutines per stream (both ends)
	Open          time.Duration // opening them all, until every one was accepted
	Check         time.Duration // the round trip on every stream
}

func liveBytes() (heap, stack uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse, runtime.NumGoroutine()
}

// measureIdle opens n streams over sockmux on TCP loopback, leaves them
// idle, measures the memory they hold (both ends are in this process),
// then checks each still carries a byte there and back.
func measureIdle(n int) (idleResult, error) {
	res := idleResult{Streams: n}
	s, err := newSockmuxStreams(nil, 2*n)
	if err != nil {
		return res, err
	}
	defer s.close()
	clients := make([]*mux.Stream, 0, n)
	servers := make(map[uint32]*mux.Stream, n)
	heap0, stack0, g0 := liveBytes()

	start := time.Now()
	accepted := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for range n {
			st, err := s.mb.AcceptStream(ctx)
			if err != nil {
				accepted <- err
				return
			}
			st.Accept()
			servers[st.ID()] = st
		}
		accepted <- nil
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range n {
		c, err := s.ma.Open(ctx, mux.Info{Network: "tcp", Dest: "bench:1"})
		if err != nil {
			return res, fmt.Errorf("opening stream %d: %w", len(clients)+1, err)
		}
		clients = append(clients, c)
	}
	if err := <-accepted; err != nil {
		return res, fmt.Errorf("accepting: %w", err)
	}
	for _, c := range clients {
		if err := c.WaitAccepted(ctx); err != nil {
			return res, fmt.Errorf("stream %d not accepted: %w", c.ID(), err)
		}
	}
	res.Open = time.Since(start)
	time.Sleep(200 * time.Millisecond) // let acknowledgements and window updates settle
	heap1, stack1, g1 := liveBytes()
	// The two tables above hold n pointers each (and the map its buckets);
	// they are the benchmark's, not sockmux's. Count them out roughly.
	bookkeeping := float64(n) * (8 + 8 + 4 + 8) * 1.5
	res.HeapBoth = (float64(heap1) - float64(heap0) - bookkeeping) / float64(n)
	res.BytesBoth = res.HeapBoth + (float64(stack1)-float64(stack0))/float64(n)
	res.GoroutinesPer = float64(g1-g0) / float64(n)

	// Every stream still works: a byte there and back on each, 32 at a time.
	start = time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(clients) {
					return
				}
				c := clients[i]
				srv := servers[c.ID()]
				if srv == nil {
					continue
				}
				if roundTrip(c, srv, byte(i)) == nil {
					mu.Lock()
					res.Usable++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	res.Check = time.Since(start)
	return res, nil
}

func roundTrip(c, s net.Conn, v byte) error {
	dl := time.Now().Add(20 * time.Second)
	_ = c.SetDeadline(dl)
	_ = s.SetDeadline(dl)
	b := []byte{v}
	if _, err := c.Write(b); err != nil {
		return err
	}
	if _, err := io.ReadFull(s, b); err != nil {
		return err
	}
	if _, err := s.Write(b); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if b[0] != v {
		return errors.New("wrong byte")
	}
	return nil
}

// idleStreams is the number of idle streams of the memory benchmark.
const idleStreams = 10000

// BenchmarkIdleStreams opens 10,000 idle streams per operation and reports
// the memory each holds (both ends together, as both are in this process)
// and how many still carried a byte each way afterwards.
func BenchmarkIdleStreams(b *testing.B) {
	var last idleResult
	for range b.N {
		r, err := measureIdle(idleStreams)
		if err != nil {
			b.Fatal(err)
		}
		if r.Usable != r.Streams {
			b.Fatalf("only %d of %d idle streams still usable", r.Usable, r.Streams)
		}
		last = r
	}
	b.ReportMetric(last.BytesBoth, "B/stream")
	b.ReportMetric(last.GoroutinesPer, "goroutines/stream")
}
