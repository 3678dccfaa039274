// Command demo shows sockmux doing its main job with no hardware at hand:
// two link ends joined first over loopback TCP, then over a virtual
// 115200-baud serial cable with line noise, each carrying a forwarded
// connection whose transfer is checked by sha256 and timed.
//
//	go run ./cmd/demo -sockmux bin/sockmux
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	bin := flag.String("sockmux", "bin/sockmux", "the sockmux binary")
	tcpSize := flag.Int("tcp-mib", 64, "MiB to move over the TCP link")
	serialKiB := flag.Int("serial-kib", 64, "KiB to move over the virtual serial cable")
	flag.Parse()
	if err := run(*bin, *tcpSize<<20, *serialKiB<<10); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(bin string, tcpSize, serialSize int) error {
	dir, err := os.MkdirTemp("", "sockmux-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(os.Interrupt)
		}
		for _, p := range procs {
			_ = p.Wait()
		}
	}()
	startProc := func(name string, args ...string) (*exec.Cmd, *os.File, error) {
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, nil, err
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return nil, nil, fmt.Errorf("starting %s: %w", bin, err)
		}
		procs = append(procs, cmd)
		fmt.Printf("  $ sockmux %s\n", strings.Join(args, " "))
		return cmd, logf, nil
	}

	data := make([]byte, max(tcpSize, serialSize))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.UintN(256))
	}
	srv, err := sourceServer(data)
	if err != nil {
		return err
	}
	defer srv.Close()
	srvAddr := srv.Addr().String()

	fmt.Println("== 1. Two link ends over loopback TCP, one -L forward")
	linkAddr, lport := freeAddr(), freePort()
	if _, _, err := startProc("receptor", "link", "--listen", linkAddr); err != nil {
		return err
	}
	if _, _, err := startProc("connector", "link", "--connect", linkAddr, "-L", fmt.Sprintf("%d:%s", lport, srvAddr)); err != nil {
		return err
	}
	if err := waitPort(lport, 10*time.Second); err != nil {
		return err
	}
	if err := fetch(lport, data[:tcpSize]); err != nil {
		return err
	}

	fmt.Println("\n== 2. The same over a virtual null-modem cable at 115200 baud, bit error rate 1e-5")
	ttyA, ttyB := filepath.Join(dir, "ttyA"), filepath.Join(dir, "ttyB")
	if _, _, err := startProc("cable", "cable", "--baud", "115200", "--ber", "1e-5", "--seed", "7", ttyA, ttyB); err != nil {
		return err
	}
	if err := waitFile(ttyA, 5*time.Second); err != nil {
		return err
	}
	sport := freePort()
	if _, _, err := startProc("end-a", "link", "--comm", ttyA, "-L", fmt.Sprintf("%d:%s", sport, srvAddr)); err != nil {
		return err
	}
	if _, _, err := startProc("end-b", "link", "--comm", ttyB); err != nil {
		return err
	}
	if err := waitPort(sport, 10*time.Second); err != nil {
		return err
	}
	fmt.Printf("  line rate: 11520 B/s (115200 baud, 10 bits a byte)\n")
	if err := fetch(sport, data[:serialSize]); err != nil {
		return err
	}
	if err := echoUnderLoad(sport, srvAddr); err != nil {
		return err
	}
	fmt.Println("\nDone. Logs of each process were in", dir, "(removed now).")
	return nil
}

// sourceServer serves, on each connection: "GET n\n" → the first n bytes
// of data; "ECHO\n" → echoes bytes back.
func sourceServer(data []byte) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				var n int
				if _, err := fmt.Sscanf(line, "GET %d", &n); err == nil && n <= len(data) {
					_, _ = c.Write(data[:n])
					return
				}
				if line == "ECHO\n" {
					_, _ = io.Copy(c, br)
				}
			}()
		}
	}()
	return ln, nil
}

// fetch downloads want through the forward at port and checks it.
func fetch(port int, want []byte) error {
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "GET %d\n", len(want))
	h := sha256.New()
	n, err := io.Copy(h, c)
	el := time.Since(start)
	if err != nil {
		return err
	}
	sent := sha256.Sum256(want)
	got := h.Sum(nil)
	fmt.Printf("  sent     %s  %d bytes\n", hex.EncodeToString(sent[:])[:32], len(want))
	fmt.Printf("  received %s  %d bytes in %v\n", hex.EncodeToString(got)[:32], n, el.Round(time.Millisecond))
	if n != int64(len(want)) || !bytes.Equal(sent[:], got) {
		return fmt.Errorf("the transfer arrived damaged")
	}
	fmt.Printf("  checksums match; goodput %s\n", rate(float64(n)/el.Seconds()))
	return nil
}

// echoUnderLoad measures a 1-byte echo while a bulk download fills the
// same line.
func echoUnderLoad(port int, _ string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bulk, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer bulk.Close()
	fmt.Fprintf(bulk, "GET %d\n", 1<<20)
	go func() { _, _ = io.Copy(io.Discard, bulk) }()
	go func() { <-ctx.Done(); bulk.Close() }()
	time.Sleep(time.Second) // let the bulk transfer fill the line
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(c, "ECHO\n")
	var rtts []time.Duration
	b := []byte{'x'}
	for range 30 {
		t0 := time.Now()
		if _, err := c.Write(b); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		rtts = append(rtts, time.Since(t0))
		time.Sleep(50 * time.Millisecond)
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	fmt.Printf("  interactive echo while a bulk download fills the line: p50 %v, max %v (%d samples)\n",
		rtts[len(rtts)/2].Round(time.Millisecond), rtts[len(rtts)-1].Round(time.Millisecond), len(rtts))
	return nil
}

func rate(bps float64) string {
	switch {
	case bps > 1<<20:
		return fmt.Sprintf("%.1f MiB/s", bps/(1<<20))
	case bps > 1<<10:
		return fmt.Sprintf("%.2f KiB/s (%.0f B/s)", bps/(1<<10), bps)
	}
	return fmt.Sprintf("%.0f B/s", bps)
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: no free port on 127.0.0.1:", err)
		os.Exit(1)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func freeAddr() string { return fmt.Sprintf("127.0.0.1:%d", freePort()) }

func waitPort(port int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("forward on port %d did not open: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitFile(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
