//go:build unix

package tests

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/internal/dgsim"
	"github.com/sockmux/sockmux/internal/testutil"
	"github.com/sockmux/sockmux/serialport"
)

// A sockmux end with --wire delegate against a simulated DeleGate 9.x
// (internal/dgsim, written from issue 18's facts and the capture), over
// TCP with either end the receptor and over a FIFO pair: a 1 MiB download
// and a 1 MiB upload through an entrance at each end, sha256-checked.
// DeleGate has no half-close: the upload's server answers once it has
// every byte, the download's closes when it has sent them.

const dgSize = 1 << 20

// dgServers are a download server (1 MiB of the pattern, then close) and
// an upload server (reads 1 MiB, answers its sha256).
func dgServers(t *testing.T) (down, up int) {
	down = testutil.Port(testutil.ServeLoopback(t, func(c net.Conn) {
		defer c.Close()
		_, _ = io.CopyN(c, newPattern(7), dgSize)
	}))
	up = testutil.Port(testutil.ServeLoopback(t, func(c net.Conn) {
		defer c.Close()
		h := sha256.New()
		if _, err := io.CopyN(h, c, dgSize); err != nil {
			return
		}
		_, _ = c.Write(h.Sum(nil))
	}))
	return down, up
}

func dgDownload(t *testing.T, address string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", address, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	got := sha256.New()
	n, err := io.Copy(got, c)
	require.NoError(t, err)
	require.Equal(t, int64(dgSize), n, "download through %s", address)
	want := sha256.New()
	_, _ = io.CopyN(want, newPattern(7), dgSize)
	assert.Equal(t, want.Sum(nil), got.Sum(nil), "download through %s", address)
}

func dgUpload(t *testing.T, address string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", address, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	h := sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.MultiWriter(c, h), newPattern(8), dgSize)
		errc <- err
	}()
	var sum [32]byte
	_, err = io.ReadFull(c, sum[:])
	require.NoError(t, err, "upload through %s", address)
	require.NoError(t, <-errc)
	assert.Equal(t, h.Sum(nil), sum[:], "upload through %s", address)
}

// dgCase runs the four transfers: through sockmux's entrances (ports
// routed by the simulated DeleGate) and through the DeleGate's entrances
// (routed by sockmux's --server rules by the port they entered on).
func dgCase(t *testing.T, smDown, smUp, dgDown, dgUp int) {
	var wg sync.WaitGroup
	for _, f := range []func(){
		func() { dgDownload(t, addr(smDown)) },
		func() { dgUpload(t, addr(smUp)) },
		func() { dgDownload(t, addr(dgDown)) },
		func() { dgUpload(t, addr(dgUp)) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	wg.Wait()
}

// dgSetup makes the servers, the ports and the simulated DeleGate's
// configuration, and sockmux's arguments for them.
type dgSetup struct {
	smDown, smUp, dgDown, dgUp int
	cfg                        dgsim.Config
	args                       []string
	lns                        []net.Listener
}

func newDGSetup(t *testing.T) *dgSetup {
	down, up := dgServers(t)
	s := &dgSetup{smDown: freePort(t), smUp: freePort(t)}
	s.cfg = dgsim.Config{InitialWait: 5 * time.Millisecond, Servers: map[int]string{s.smDown: addr(down), s.smUp: addr(up)}}
	for i := 0; i < 2; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		s.lns = append(s.lns, ln)
	}
	s.dgDown, s.dgUp = testutil.Port(s.lns[0]), testutil.Port(s.lns[1])
	s.args = []string{"--wire", "delegate", "--port", strconv.Itoa(s.smDown) + "," + strconv.Itoa(s.smUp),
		"--server", "tcp://" + addr(down) + ":-:-P" + strconv.Itoa(s.dgDown),
		"--server", "tcp://" + addr(up) + ":-:-P" + strconv.Itoa(s.dgUp)}
	return s
}

func (s *dgSetup) start(t rwc) *dgsim.Peer {
	p := dgsim.Start(t, s.cfg)
	for _, ln := range s.lns {
		p.Entrance(ln)
	}
	return p
}

type rwc = io.ReadWriteCloser

// relisten closes the simulated DeleGate's entrances and listens again on
// the same ports, for a restarted one.
func (s *dgSetup) relisten(t *testing.T) {
	for i, ln := range s.lns {
		a := ln.Addr().String()
		ln.Close()
		var err error
		require.Eventually(t, func() bool { s.lns[i], err = net.Listen("tcp", a); return err == nil }, 5*time.Second, 10*time.Millisecond)
		t.Cleanup(func() { s.lns[i].Close() })
	}
}

func TestDeleGateWireReceptor(t *testing.T) {
	t.Parallel()
	s := newDGSetup(t)
	lport := freePort(t)
	sock := filepath.Join(controlDir(t), "dg.sock")
	metricsAddr := addr(freePort(t))
	sm := start(t, "sockmux receptor", append([]string{"link", "--listen", addr(lport), "--control", sock, "--metrics", metricsAddr}, s.args...)...)
	sm.waitLog("has none of sockmux's integrity checks", 10*time.Second)
	waitListening(t, addr(s.smDown), 10*time.Second)
	var c net.Conn
	require.Eventually(t, func() bool {
		var err error
		c, err = net.Dial("tcp", addr(lport))
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	p := s.start(c)
	defer p.Close()
	sm.waitLog("DeleGate SockMux tunnel up", 10*time.Second)
	dgCase(t, s.smDown, s.smUp, s.dgDown, s.dgUp)
	st := status(t, sock)
	assert.Equal(t, "up", st.State)
	assert.Greater(t, st.BytesIn, uint64(2*dgSize))
	assert.Greater(t, st.BytesOut, uint64(2*dgSize))
	m := scrape(t, "http://"+metricsAddr+"/metrics")
	assert.Equal(t, 1.0, m["sockmux_link_up"])
	assert.GreaterOrEqual(t, m["sockmux_payload_received_total"], float64(2*dgSize))
	code, out := run(t, 10*time.Second, "test-link", "--control", sock)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "needs a sockmux peer")
}

func TestDeleGateWireConnector(t *testing.T) {
	t.Parallel()
	s := newDGSetup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	// DeleGate's own syntax, with WIRE=delegate.
	args := []string{"delegate", "SERVER=sockmux://" + ln.Addr().String(), "WIRE=delegate",
		"PORT=" + strconv.Itoa(s.smDown) + "," + strconv.Itoa(s.smUp),
		"SERVER=tcp://" + s.cfg.Servers[s.smDown] + ",-in:-:-P" + strconv.Itoa(s.dgDown),
		"SERVER=tcp://" + s.cfg.Servers[s.smUp] + ",-in:-:-P" + strconv.Itoa(s.dgUp)}
	sm := start(t, "sockmux connector", args...)
	c, err := ln.Accept()
	require.NoError(t, err)
	p := s.start(c)
	defer p.Close()
	sm.waitLog("DeleGate SockMux tunnel up", 10*time.Second)
	assert.Contains(t, sm.logText(), "--wire delegate", "the equivalent command names the wire")
	waitListening(t, addr(s.smDown), 10*time.Second)
	dgCase(t, s.smDown, s.smUp, s.dgDown, s.dgUp)

	// The DeleGate restarts: a new tunnel, and connections work again.
	p.Close()
	sm.waitLog("DeleGate tunnel lost", 10*time.Second)
	c, err = ln.Accept()
	require.NoError(t, err)
	p = s.start(c)
	defer p.Close()
	dgDownload(t, addr(s.smDown))
}

// fifoRW joins the two FIFOs of one end.
type fifoRW struct{ r, w *os.File }

func (f fifoRW) Read(b []byte) (int, error)  { return f.r.Read(b) }
func (f fifoRW) Write(b []byte) (int, error) { return f.w.Write(b) }
func (f fifoRW) Close() error                { f.r.Close(); return f.w.Close() }

// openFIFOs opens the simulated DeleGate's ends of the FIFO pair: it
// writes in and reads out.
func openFIFOs(t *testing.T, in, out string) fifoRW {
	t.Helper()
	var rw fifoRW
	var werr, rerr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); rw.w, werr = os.OpenFile(in, os.O_WRONLY, 0) }()
	go func() { defer wg.Done(); rw.r, rerr = os.OpenFile(out, os.O_RDONLY, 0) }()
	wg.Wait()
	require.NoError(t, werr)
	require.NoError(t, rerr)
	return rw
}

func TestDeleGateWireFIFO(t *testing.T) {
	t.Parallel()
	s := newDGSetup(t)
	f := mkfifos(t, "dg2sm", "sm2dg")
	sm := start(t, "sockmux on FIFOs", append([]string{"link", "--commin", f[0], "--commout", f[1]}, s.args...)...)
	p := s.start(openFIFOs(t, f[0], f[1]))
	defer p.Close()
	sm.waitLog("DeleGate SockMux tunnel up", 10*time.Second)
	waitListening(t, addr(s.smDown), 10*time.Second)
	dgCase(t, s.smDown, s.smUp, s.dgDown, s.dgUp)
	assert.False(t, bytes.Contains([]byte(sm.logText()), []byte("level=ERROR")), "errors logged")

	// The DeleGate is restarted on the same FIFOs: a new tunnel.
	p.Close()
	require.Error(t, p.Wait())
	sm.waitLog("DeleGate tunnel lost", 10*time.Second)
	s.relisten(t) // the new DeleGate's entrances, on the same ports
	p = s.start(openFIFOs(t, f[0], f[1]))
	defer p.Close()
	sm.waitCount("DeleGate SockMux tunnel up", 2, 10*time.Second)
	dgDownload(t, addr(s.smDown))
	dgUpload(t, addr(s.dgUp))
}

// Two sockmux ends may speak DeleGate's wire to each other too (the
// migration's last step may keep it at both ends for a while).
func TestDeleGateWireBetweenTwoSockmux(t *testing.T) {
	t.Parallel()
	down, up := dgServers(t)
	lport, eDown, eUp := freePort(t), freePort(t), freePort(t)
	x := start(t, "sockmux X", "link", "--wire", "delegate", "--listen", addr(lport), "--port", strconv.Itoa(eDown)+","+strconv.Itoa(eUp))
	x.waitLog("sockmux link started", 10*time.Second)
	y := start(t, "sockmux Y", "link", "--wire", "delegate", "--connect", addr(lport),
		"--server", "tcp://"+addr(down)+":-:-P"+strconv.Itoa(eDown), "--server", "tcp://"+addr(up)+":-:-P"+strconv.Itoa(eUp))
	x.waitLog("DeleGate SockMux tunnel up", 10*time.Second)
	y.waitLog("DeleGate SockMux tunnel up", 10*time.Second)
	dgDownload(t, addr(eDown))
	dgUpload(t, addr(eUp))
}

// Many connections at once both ways share the tunnel's flow control
// without stalling.
func TestDeleGateWireConcurrent(t *testing.T) {
	t.Parallel()
	s := newDGSetup(t)
	lport := freePort(t)
	sm := start(t, "sockmux receptor", append([]string{"link", "--listen", addr(lport)}, s.args...)...)
	sm.waitLog("sockmux link started", 10*time.Second)
	c, err := net.Dial("tcp", addr(lport))
	require.NoError(t, err)
	p := s.start(c)
	defer p.Close()
	sm.waitLog("DeleGate SockMux tunnel up", 10*time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); dgCase(t, s.smDown, s.smUp, s.dgDown, s.dgUp) }()
	}
	wg.Wait()
}

// Over a serial line (sockmux's virtual null-modem cable): sockmux warns
// that DeleGate's wire has no integrity checks, and carries the transfers.
func TestDeleGateWireSerial(t *testing.T) {
	t.Parallel()
	s := newDGSetup(t)
	_, pathA, pathB := startCable(t, "--baud", "0")
	sm := start(t, "sockmux on the cable", append([]string{"link", "--comm", pathA, "--baud", "115200"}, s.args...)...)
	sm.waitLog("noise reaches the connections", 10*time.Second)
	port, err := serialport.OpenPort(pathB, serialport.Mode{Baud: 115200, DataBits: 8, Parity: "none", StopBits: "1", Flow: "none"})
	require.NoError(t, err)
	p := s.start(port)
	defer p.Close()
	sm.waitLog("DeleGate SockMux tunnel up", 10*time.Second)
	waitListening(t, addr(s.smDown), 10*time.Second)
	dgCase(t, s.smDown, s.smUp, s.dgDown, s.dgUp)
}

// The built-in proxies at a sockmux exit serve connections that entered a
// DeleGate: SOCKS5 (whose greeting arrives in the CONNECT) and HTTP.
func TestDeleGateWireProxyExit(t *testing.T) {
	t.Parallel()
	web := webServer(t, "web")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	q := testutil.Port(ln)
	lport := freePort(t)
	sm := start(t, "sockmux receptor", "link", "--listen", addr(lport), "--wire", "delegate", "--server", "socks:-:-P"+strconv.Itoa(q))
	sm.waitLog("sockmux link started", 10*time.Second)
	c, err := net.Dial("tcp", addr(lport))
	require.NoError(t, err)
	p := dgsim.Start(c, dgsim.Config{InitialWait: 5 * time.Millisecond})
	defer p.Close()
	p.Entrance(ln)
	sm.waitLog("DeleGate SockMux tunnel up", 10*time.Second)
	code, body := get(t, socksClient(t, addr(q)), web.URL+"/socks")
	assert.Equal(t, 200, code)
	assert.Equal(t, "web: GET /socks ", body)
	code, body = get(t, proxiedClient("http://"+addr(q)), web.URL+"/http")
	assert.Equal(t, 200, code)
	assert.Equal(t, "web: GET /http ", body)
}

func TestDeleGateWireRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-R", "2222:127.0.0.1:22"}, "cannot listen for this end (-R)"},
		{[]string{"-D", "1080"}, "cannot be told a destination (-D)"},
		{[]string{"-L", "5353:127.0.0.1:53/udp"}, "only TCP"},
		{[]string{"--secret-file", "/nonexistent"}, ""},
	} {
		args := append([]string{"link", "--connect", addr(freePort(t)), "--wire", "delegate"}, tc.args...)
		code, out := run(t, 10*time.Second, args...)
		assert.NotEqual(t, 0, code, args)
		assert.Contains(t, out, tc.want, args)
	}
	key := filepath.Join(t.TempDir(), "k")
	code, out := run(t, 10*time.Second, "keygen", key)
	require.Equal(t, 0, code, out)
	code, out = run(t, 10*time.Second, "link", "--connect", addr(freePort(t)), "--wire", "delegate", "--secret-file", key)
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "--secret-file cannot be used")
}
