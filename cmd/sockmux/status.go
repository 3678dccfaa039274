package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/control"
	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/hub"
	"github.com/sockmux/sockmux/serialport"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show a running link's state, counters and open streams",
		UsageText: "sockmux status [--name NAME | --control PATH] [--json] [--watch] [PEER]",
		Description: `Asks a running sockmux link, through its control socket, how it is doing:
its state, session, transport, round-trip time, bytes and goodput each way,
frames resent and dropped, resumes, and the streams open now.

On a hub (--peers) it lists the peers: name, state, uptime, round-trip time,
bytes each way, streams and transport; sockmux status PEER shows one peer's
link in full.`,
		Flags: append(controlFlags(),
			&cli.BoolFlag{Name: "json", Usage: "print the status as JSON"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "redraw the status every second until interrupted"},
		),
		Action: func(c *cli.Context) error {
			path, err := socketPath(c.String("control"), c.String("name"))
			if err != nil {
				return err
			}
			if c.NArg() > 1 {
				return fmt.Errorf("unexpected argument %q (sockmux status [PEER])", c.Args().Get(1))
			}
			peer := c.Args().First()
			if c.Bool("watch") {
				return watchStatus(c.Context, path, peer, c.Bool("json"))
			}
			st, err := control.QueryPeer(path, peer, 5*time.Second)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(st)
			}
			return control.Render(os.Stdout, st)
		},
	}
}

// printJSON writes v to standard output as indented JSON.
// controlFlags choose the running link a command talks to.
func controlFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "the --name the link was started with", Value: control.DefaultName},
		&cli.StringFlag{Name: "control", Usage: "the link's control socket at `PATH` (instead of --name)"},
	}
}

// socketPath is the control socket at path if given, else the one of the
// link called name.
func socketPath(path, name string) (string, error) {
	if path != "" {
		return path, nil
	}
	return control.SocketPath(name)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// watchStatus redraws the status once a second: cursor home, the new
// text over the old, clear the rest; the screen is blanked only once.
func watchStatus(ctx context.Context, path, peer string, asJSON bool) error {
	cl, err := control.Dial(path, 5*time.Second)
	if err != nil {
		return err
	}
	defer func() { cl.Close() }()
	fmt.Print("\x1b[H\x1b[2J")
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		var b strings.Builder
		st, err := cl.PeerStatus(peer, 5*time.Second)
		if err != nil {
			// The link went away or restarted: say so and keep trying.
			cl.Close()
			fmt.Fprintf(&b, "sockmux status: %v (retrying)\n", err)
			if c2, err := control.Dial(path, time.Second); err == nil {
				cl = c2
			}
		} else if asJSON {
			data, _ := json.MarshalIndent(st, "", "  ")
			b.Write(data)
			b.WriteByte('\n')
		} else if err := control.Render(&b, st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "\n%s  (every 1s; Ctrl-C to stop)\n", time.Now().Format("15:04:05"))
		if _, err := os.Stdout.WriteString(control.Frame(b.String())); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// startOps serves the control socket and, with --metrics, the metrics
// endpoint, until ctx ends; the channel is closed once both stopped. With
// no --name or --control, a default socket another link already holds
// is a warning (this link then has none): several links on one host are
// common, and each needs its own --name to be watched.
func startOps(ctx context.Context, plan linkPlan, ep *endpoint.Endpoint, ab *autoBaud, log *slog.Logger) (<-chan struct{}, error) {
	name := plan.ops.name
	if name == "" {
		name = control.DefaultName
	}
	line := ""
	if t := plan.transport.comm; t != "" && serialport.IsSerial(t) {
		line = lineSettings(plan.opts.serial)
	}
	src := control.Source{Name: name, Version: version, Line: line, Link: ep.Link, DeleGate: ep.DeleGate, Mux: ep.Mux, Driver: ep.Driver}
	if sd, ok := ep.Driver.(*serialport.Driver); ok {
		src.Serial = sd.LineStatus
	}
	if ab != nil {
		src.LineNow = ab.line
	}
	return serveOps(ctx, plan, src, log)
}

// startHubOps is startOps for a hub: its status lists the peers. A hub
// of ports shows each port's line too (ports: its --baud auto).
func startHubOps(ctx context.Context, plan linkPlan, h *hub.Hub, ports *portHubState, log *slog.Logger) (<-chan struct{}, error) {
	name := plan.ops.name
	if name == "" {
		name = control.DefaultName
	}
	src := control.Source{Name: name, Version: version,
		Peers: func() []control.PeerSource {
			var out []control.PeerSource
			for _, m := range h.Peers() {
				ps := control.PeerSource{Name: m.Peer.Name, Link: m.Endpoint.Link, Mux: m.Endpoint.Mux, Driver: m.Driver()}
				if sd, ok := m.Driver().(*serialport.Driver); ok {
					ps.Line, ps.Serial = lineSettings(sd.Mode()), sd.LineStatus
					if ab := ports.autoBaud(m.Peer.Name); ab != nil {
						ps.LineNow = ab.line
					}
				}
				out = append(out, ps)
			}
			return out
		}}
	if addr := h.Addr(); addr != nil {
		src.Transport, src.Refused = "tcp hub "+addr.String(), h.Refused
	} else {
		src.Transport = "serial ports"
		if g := plan.transport.commGlob; g != "" {
			src.Transport += ", and those matching " + g
		}
	}
	return serveOps(ctx, plan, src, log)
}

// serveOps serves src's control socket and metrics (startOps).
func serveOps(ctx context.Context, plan linkPlan, src control.Source, log *slog.Logger) (<-chan struct{}, error) {
	name := src.Name
	col := control.NewCollector(src, os.Getpid())
	done := make(chan struct{})
	explicit := plan.ops.name != "" || plan.ops.control != ""
	path, err := socketPath(plan.ops.control, name)
	if err != nil {
		return nil, err
	}
	srv, err := control.Listen(path, col, log)
	var inUse *control.ErrInUse
	switch {
	case err == nil:
	case !explicit && errors.As(err, &inUse):
		log.Warn("no control socket for this link: give it a --name to watch it with sockmux status", "err", err)
	case explicit:
		return nil, err
	default:
		log.Warn("no control socket for this link", "err", err)
	}
	var metrics *http.Server
	if plan.ops.metrics != "" {
		ln, err := net.Listen("tcp", plan.ops.metrics)
		if err != nil {
			if srv != nil {
				srv.Close()
			}
			return nil, fmt.Errorf("--metrics: %w", err)
		}
		metrics = &http.Server{Handler: control.MetricsHandler(col), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = metrics.Serve(ln) }()
		log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	}
	go func() {
		defer close(done)
		go col.Run(ctx)
		if srv != nil {
			log.Info("control socket", "path", srv.Path())
			srv.Serve(ctx)
		} else {
			<-ctx.Done()
		}
		if metrics != nil {
			_ = metrics.Close()
		}
	}()
	return done, nil
}

// lineSettings describes a serial line, e.g. "115200 baud 8N1, flow none".
func lineSettings(m serialport.Mode) string {
	p := "N"
	if m.Parity != "" {
		p = strings.ToUpper(m.Parity[:1])
	}
	return fmt.Sprintf("%d baud %d%s%s, flow %s", m.Baud, m.DataBits, p, m.StopBits, m.Flow)
}
