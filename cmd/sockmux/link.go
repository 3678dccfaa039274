package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/pipe"
	"github.com/sockmux/sockmux/serialport"
)

func linkCommand() *cli.Command {
	return &cli.Command{
		Name:  "link",
		Usage: "run one end of a link and its forwards",
		UsageText: `sockmux link (--listen ADDR | --connect ADDR | --comm PATH | --commin PATH --commout PATH)
       [-L [BIND:]PORT:HOST:HOSTPORT]... [-R [BIND:]PORT:HOST:HOSTPORT]... [options]`,
		Description: `Runs one end of a link over the transport given, and carries connections
over it. Both ends may forward in both directions at once.

  -L [BIND:]PORT:HOST:HOSTPORT  listen here on BIND:PORT (BIND defaults to
                                127.0.0.1); the far end connects to HOST:HOSTPORT
  -R [BIND:]PORT:HOST:HOSTPORT  the far end listens on BIND:PORT; this end
                                connects to HOST:HOSTPORT

When the transport breaks (a cable pulled, a connection cut, the other program
restarted on the same pipes), the link waits for it, reopens it and resumes:
open connections carry on with nothing lost. A client that connects while the
link is down waits up to --link-wait for it.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Usage: "be the receptor: listen for the other end on `ADDR` (host:port)", Category: "Transport"},
			&cli.StringFlag{Name: "connect", Usage: "be the connector: dial the other end at `ADDR` (host:port), again whenever it drops", Category: "Transport"},
			&cli.StringFlag{Name: "comm", Usage: "one bidirectional channel: a serial port (/dev/ttyUSB0, COM3), a character device, a Unix socket or a Windows named pipe at `PATH`", Category: "Transport"},
			&cli.StringFlag{Name: "commin", Usage: "read the link from the named pipe (FIFO) at `PATH`; created if missing", Category: "Transport"},
			&cli.StringFlag{Name: "commout", Usage: "write the link to the named pipe (FIFO) at `PATH`; created if missing", Category: "Transport"},
			&cli.IntFlag{Name: "baud", Value: 115200, Usage: "serial line speed in bits per second", Category: "Serial line"},
			&cli.IntFlag{Name: "data-bits", Value: 8, Usage: "serial data bits (sockmux needs 8)", Category: "Serial line"},
			&cli.StringFlag{Name: "parity", Value: "none", Usage: "serial parity: none, odd, even, mark or space", Category: "Serial line"},
			&cli.StringFlag{Name: "stop-bits", Value: "1", Usage: "serial stop bits: 1, 1.5 or 2", Category: "Serial line"},
			&cli.StringFlag{Name: "flow", Value: "none", Usage: "serial flow control: none or rtscts", Category: "Serial line"},
			&cli.StringSliceFlag{Name: "local", Aliases: []string{"L"}, Usage: "forward `[BIND:]PORT:HOST:HOSTPORT` from here to the far end (repeatable)", Category: "Forwarding"},
			&cli.StringSliceFlag{Name: "remote", Aliases: []string{"R"}, Usage: "forward `[BIND:]PORT:HOST:HOSTPORT` from the far end to here (repeatable)", Category: "Forwarding"},
			&cli.DurationFlag{Name: "link-wait", Value: 30 * time.Second, Usage: "how long a client that connects while the link is down waits for it", Category: "Forwarding"},
			&cli.DurationFlag{Name: "dial-timeout", Value: 10 * time.Second, Usage: "how long to wait for a destination to accept a connection", Category: "Forwarding"},
			&cli.DurationFlag{Name: "keepalive", Usage: "ping the peer after this much silence (default: 1s on serial lines, 10s otherwise)", Category: "Link"},
			&cli.DurationFlag{Name: "dead-timeout", Usage: "reopen the transport after hearing nothing for this long (default: 5s on serial lines, 30s otherwise)", Category: "Link"},
			&cli.DurationFlag{Name: "handshake-timeout", Value: 10 * time.Second, Usage: "give up a transport whose peer does not complete the handshake in this time, and open it again", Category: "Link"},
			&cli.DurationFlag{Name: "grace", Value: 5 * time.Second, Usage: "on SIGINT/SIGTERM, how long connections under way may finish", Category: "Link"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug (shows frames), info, warn or error"},
		},
		Action: runLink,
	}
}

// closer is a driver that holds something to release at exit.
type closer interface{ Close() error }

// openDriver picks and checks the transport from the flags.
func openDriver(c *cli.Context, log *slog.Logger) (link.Driver, error) {
	var chosen []string
	for _, f := range []string{"listen", "connect", "comm", "commin"} {
		if c.IsSet(f) {
			chosen = append(chosen, "--"+f)
		}
	}
	if c.IsSet("commout") && !c.IsSet("commin") {
		chosen = append(chosen, "--commout")
	}
	switch {
	case len(chosen) == 0:
		return nil, errors.New("no transport: give --listen, --connect, --comm, or --commin with --commout")
	case len(chosen) > 1:
		return nil, fmt.Errorf("more than one transport: %v; give exactly one", chosen)
	}
	switch {
	case c.IsSet("listen"):
		r, err := link.ListenTCP(c.String("listen"))
		if err != nil {
			return nil, fmt.Errorf("--listen: %w", err)
		}
		return r, nil
	case c.IsSet("connect"):
		return &link.TCPConnector{Addr: c.String("connect")}, nil
	case c.IsSet("commin"):
		if !c.IsSet("commout") {
			return nil, errors.New("--commin needs --commout (the pipe to write to)")
		}
		return pipe.NewPair(c.String("commin"), c.String("commout"), log)
	}
	path := c.String("comm")
	if !serialport.IsSerial(path) {
		return pipe.NewComm(path, log)
	}
	mode := serialport.Mode{
		Baud:     c.Int("baud"),
		DataBits: c.Int("data-bits"),
		Parity:   c.String("parity"),
		StopBits: c.String("stop-bits"),
		Flow:     c.String("flow"),
	}
	return serialport.New(path, mode, log)
}

// streamWindow sizes each stream's receive window to the line: seconds of
// a slow line, a few MiB on fast transports.
func streamWindow(p link.Properties) int {
	if p.LineRate == 0 {
		return 1 << 20
	}
	return max(mux.InitialWindow, min(4<<20, 2*p.LineRate))
}

func runLink(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (forwards go with -L or -R)", c.Args().First())
	}
	log, err := newLogger(c.String("log-level"))
	if err != nil {
		return err
	}
	var forwards []forward.Forward
	for _, spec := range c.StringSlice("local") {
		fw, err := forward.ParseForward(forward.Local, spec)
		if err != nil {
			return fmt.Errorf("-L: %w", err)
		}
		forwards = append(forwards, fw)
	}
	for _, spec := range c.StringSlice("remote") {
		fw, err := forward.ParseForward(forward.Remote, spec)
		if err != nil {
			return fmt.Errorf("-R: %w", err)
		}
		forwards = append(forwards, fw)
	}
	drv, err := openDriver(c, log)
	if err != nil {
		return err
	}
	if cl, ok := drv.(closer); ok {
		defer cl.Close()
	}

	fwd := forward.New(nil, forward.Config{
		LinkWait:    c.Duration("link-wait"),
		DialTimeout: c.Duration("dial-timeout"),
		Logger:      log,
	})
	m := mux.New(mux.Config{
		StreamWindow: streamWindow(drv.Properties()),
		OnListen:     fwd.OnListen,
		OnSessionEnd: fwd.OnSessionEnd,
		Logger:       log,
	})
	fwd.SetMux(m)
	l := link.New(drv, m, link.Config{
		KeepAlive:        c.Duration("keepalive"),
		DeadTimeout:      c.Duration("dead-timeout"),
		HandshakeTimeout: c.Duration("handshake-timeout"),
		Logger:           log,
	})
	m.SetNotify(l.Notify)
	for _, fw := range forwards {
		if err := fwd.Add(fw); err != nil {
			fwd.Close()
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	linkDone := make(chan error, 1)
	go func() { linkDone <- l.Run(runCtx) }()
	go func() { _ = fwd.Serve(runCtx) }()
	cfg := l.Config()
	log.Info("sockmux link started", "version", version, "transport", drv.String(),
		"frame_payload", cfg.MaxPayload, "window", cfg.Window)

	select {
	case <-ctx.Done():
	case err := <-linkDone:
		return err
	}
	stop()
	// Shut down: no new connections, let those under way finish for a
	// while, tell the peer, and go.
	log.Info("shutting down", "open_streams", m.NumStreams(), "grace", c.Duration("grace"))
	fwd.Close()
	graceCtx, cancel := context.WithTimeout(context.Background(), c.Duration("grace"))
	if err := fwd.Wait(graceCtx); err != nil {
		log.Warn("grace period over; resetting connections still open", "open_streams", m.NumStreams())
	}
	cancel()
	m.Close()
	l.Close("peer shut down", 2*time.Second)
	cancelRun()
	log.Info("stopped")
	return nil
}
