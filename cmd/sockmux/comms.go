package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/hub"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/pipe"
	"github.com/sockmux/sockmux/serialport"
)

// A hub of serial ports: sockmux link --comm A --comm B (or --comm-glob
// PATTERN) runs one plain --comm end per port in one process, each port a
// peer of a hub (package hub, Attach) named after its path or as given
// (NAME=PATH). Forwards, -D, status and metrics are the hub's; this file
// only turns the flags into the hub's attachments.

// cutCommName splits a --comm of the form NAME=PATH; named is false for
// a plain path (no '=', nothing before or after it, or a path that
// exists as written: a file name may hold '=').
func cutCommName(v string) (name, path string, named bool) {
	name, path, ok := strings.Cut(v, "=")
	if !ok || name == "" || path == "" || strings.ContainsAny(name, `/\:`) {
		return "", v, false
	}
	if _, err := os.Lstat(v); err == nil {
		return "", v, false
	}
	return name, path, true
}

// commNamed reports whether a --comm names its port (NAME=PATH), which
// makes even a single one a hub's peer.
func commNamed(v string) bool {
	_, _, named := cutCommName(v)
	return named
}

// commPort is one port of a hub of ports.
type commPort struct {
	name, path string
}

// commPorts names the --comm ports of a hub: NAME=PATH as given, a plain
// path after it (hub.PortName), made unique (ttyUSB0-2) against the
// names given. A name or a path given twice is an error.
func commPorts(specs []string) ([]commPort, error) {
	var out []commPort
	taken := map[string]string{} // lower-case name: path
	paths := map[string]bool{}
	var plain []int
	for _, v := range specs {
		name, path, named := cutCommName(v)
		if paths[path] {
			return nil, fmt.Errorf("--comm %s is given twice", path)
		}
		paths[path] = true
		if named {
			if err := link.CheckName(name); err != nil {
				return nil, fmt.Errorf("--comm %s: %w", v, err)
			}
			if other, dup := taken[strings.ToLower(name)]; dup {
				return nil, fmt.Errorf("--comm %s: the name %s is %s's already", v, name, other)
			}
			taken[strings.ToLower(name)] = path
		} else {
			plain = append(plain, len(out))
		}
		out = append(out, commPort{name: name, path: path})
	}
	for _, i := range plain {
		name := hub.UniqueName(hub.PortName(out[i].path), func(n string) bool { _, ok := taken[strings.ToLower(n)]; return ok })
		taken[strings.ToLower(name)] = out[i].path
		out[i].name = name
	}
	return out, nil
}

// checkPorts refuses what a hub of ports cannot do.
func checkPorts(plan linkPlan) error {
	t, o := plan.transport, plan.opts
	switch {
	case t.peers != "" || t.listen != "":
		return errors.New("several --comm (or --comm-glob, or NAME=PATH) make a hub of serial ports, which cannot also listen (--listen, --peers): run the TCP hub in a process of its own")
	case t.connect != "" || t.commin != "" || t.commout != "" || t.stdio || t.exec != "":
		return errors.New("several --comm (or --comm-glob, or NAME=PATH) make a hub of serial ports: give no other transport")
	case o.wire == endpoint.WireDeleGate:
		return errors.New("--wire delegate takes one --comm: a hub of ports speaks sockmux's wire only")
	}
	return checkAutoBaud(plan)
}

// portHubState is what a hub of ports keeps of each port: its --baud
// auto controller, for status.
type portHubState struct {
	mu   sync.Mutex
	auto map[string]*autoBaud // by lower-case name
}

func (s *portHubState) autoBaud(name string) *autoBaud {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auto[strings.ToLower(name)]
}

// portDriver opens a hub's port at path: a serial port, which need not be
// there yet (serialport.NewWaiting: it waits as for an unplugged one),
// else a character device, a Unix socket or a named pipe as a single
// --comm opens it.
func portDriver(path string, o linkOptions, log *slog.Logger) (link.Driver, error) {
	_, statErr := os.Stat(path)
	if serialport.IsSerial(path) || errors.Is(statErr, fs.ErrNotExist) {
		return serialport.NewWaiting(path, o.serial, o.serialOpts, log)
	}
	return pipe.NewComm(path, log)
}

// portAttachment is the hub's member for the port name at path: a plain
// --comm end's options over its driver, with --baud auto if asked.
func portAttachment(cur linkPlan, base endpoint.Options, state *portHubState, name, path string, log *slog.Logger) (hub.Attachment, error) {
	plog := log.With("name", name)
	drv, err := portDriver(path, cur.opts, plog)
	if err != nil {
		return hub.Attachment{}, err
	}
	opts := base
	opts.Driver = drv
	opts.Logger = plog
	a := hub.Attachment{Name: name, Path: path, Options: opts}
	sd, serial := drv.(*serialport.Driver)
	if !serial {
		opts.Link.HalfDuplex = false
		a.Options = opts
		if cur.opts.halfDuplex || cur.opts.autoBaud {
			plog.Warn("--half-duplex and --baud auto are for serial ports: not used on this one", "path", path)
		}
		return a, nil
	}
	if cur.opts.autoBaud {
		ab := newAutoBaud(cur, sd, plog)
		services := map[string]func(context.Context, *mux.Stream){}
		for k, v := range base.Forward.Services {
			services[k] = v
		}
		for k, v := range ab.services() {
			services[k] = v
		}
		a.Options.Forward.Services = services
		a.Start = func(ctx context.Context, ep *endpoint.Endpoint) {
			ab.bind(ep)
			ab.run(ctx)
		}
		state.mu.Lock()
		state.auto[strings.ToLower(name)] = ab
		state.mu.Unlock()
	}
	return a, nil
}
