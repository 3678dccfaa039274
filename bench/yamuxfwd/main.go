// Command yamuxfwd is the benchmark suite's baseline for the whole
// program: a port forwarder of the same shape as two "sockmux link"
// processes with -L, built on hashicorp/yamux over one TCP connection.
//
//	yamuxfwd -listen ADDR                 (the far end: dials each stream's target)
//	yamuxfwd -connect ADDR -L PORT:HOST:PORT  (the near end: listens on PORT)
//
// Each connection to PORT becomes one yamux stream; the stream opens with
// the target address (2 bytes of length, then the address), and the far
// end dials it and copies both ways, half-closing as each direction ends.
// The far end serves every link connection it accepts; both serve until
// interrupted. yamux runs with its default configuration,
// as in the suite's library-level rows.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"

	"github.com/hashicorp/yamux"
)

func main() {
	listen := flag.String("listen", "", "accept the link on `ADDR` (the far end)")
	connect := flag.String("connect", "", "dial the link at `ADDR` (the near end)")
	fwd := flag.String("L", "", "near end: forward local `PORT:HOST:PORT` through the link")
	flag.Parse()
	err := run(*listen, *connect, *fwd)
	fmt.Fprintln(os.Stderr, "yamuxfwd:", err)
	os.Exit(1)
}

// run serves until interrupted; it returns only what stopped it.
func run(listen, connect, fwd string) error {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt)
		<-c
		os.Exit(0)
	}()
	switch {
	case listen != "" && connect == "" && fwd == "":
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return err
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			go serveLink(c, cfg)
		}
	case connect != "" && listen == "" && fwd != "":
		port, target, ok := strings.Cut(fwd, ":")
		if !ok || target == "" {
			return fmt.Errorf("-L %q: want PORT:HOST:PORT", fwd)
		}
		c, err := net.Dial("tcp", connect)
		if err != nil {
			return err
		}
		sess, err := yamux.Client(c, cfg)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return err
		}
		for {
			lc, err := ln.Accept()
			if err != nil {
				return err
			}
			go func() {
				st, err := sess.OpenStream()
				if err != nil {
					log.Printf("opening a stream: %v", err)
					lc.Close()
					return
				}
				hdr := binary.BigEndian.AppendUint16(nil, uint16(len(target)))
				if _, err := st.Write(append(hdr, target...)); err != nil {
					lc.Close()
					st.Close()
					return
				}
				pipe(lc, st)
			}()
		}
	default:
		return errors.New("use -listen ADDR, or -connect ADDR -L PORT:HOST:PORT")
	}
}

// serveLink serves one link connection's streams until it closes.
func serveLink(c net.Conn, cfg *yamux.Config) {
	sess, err := yamux.Server(c, cfg)
	if err != nil {
		log.Printf("yamux: %v", err)
		c.Close()
		return
	}
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		go serveStream(st)
	}
}

// serveStream reads the stream's target, dials it and copies both ways.
func serveStream(st *yamux.Stream) {
	var n [2]byte
	if _, err := io.ReadFull(st, n[:]); err != nil {
		st.Close()
		return
	}
	addr := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(st, addr); err != nil {
		st.Close()
		return
	}
	c, err := net.Dial("tcp", string(addr))
	if err != nil {
		log.Printf("dialing %s: %v", addr, err)
		st.Close()
		return
	}
	pipe(c, st)
}

// pipe copies between a TCP connection and a stream until both
// directions ended, passing each end-of-file on as a half-close.
func pipe(c net.Conn, st *yamux.Stream) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.CopyBuffer(st, c, make([]byte, 32<<10))
		st.Close() // yamux: sends FIN, reading goes on
	}()
	go func() {
		defer wg.Done()
		_, _ = io.CopyBuffer(c, st, make([]byte, 32<<10))
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		} else {
			c.Close()
		}
	}()
	wg.Wait()
	c.Close()
	st.Close()
}
