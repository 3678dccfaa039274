package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/hub"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/peers"
	"github.com/sockmux/sockmux/tcpdriver"
)

// helloName is the name this end gives in its hello: its --name, when it
// connects (to a hub, perhaps) and the name can be a peer's.
func helloName(plan linkPlan, log *slog.Logger) string {
	name := plan.ops.name
	if plan.transport.connect == "" || name == "" {
		return ""
	}
	if err := link.CheckName(name); err != nil {
		log.Warn("--name is not given to the far end: a hub could not serve it", "reason", err)
		return ""
	}
	return name
}

// checkHub refuses what a hub cannot do.
func checkHub(plan linkPlan) error {
	t := plan.transport
	switch {
	case t.listen == "":
		return errors.New("--peers needs --listen ADDR: a hub listens for its peers over TCP")
	case t.connect != "" || t.comm != "" || t.commin != "" || t.commout != "" || t.stdio || t.exec != "":
		return errors.New("--peers goes with --listen only: a hub listens for its peers over TCP")
	case plan.opts.secretFile != "":
		return errors.New("--peers: each peer's key is in the peers file; --secret-file is for an end with one peer")
	case plan.opts.wire == endpoint.WireDeleGate:
		return errors.New("--peers: a hub speaks sockmux's wire only (DeleGate's has no names or keys)")
	case plan.opts.halfDuplex:
		return errors.New("--half-duplex is for a serial line (--comm), not a hub")
	}
	return nil
}

// hubNames are the names of a hub's peers, for its forwards: those of its
// peers file, or of its ports; a hub with --comm-glob takes any name (a
// port of that name may yet be plugged in).
type hubNames struct {
	table *peers.Table
	ports []commPort
	glob  string
}

// known reports whether name is a peer's, and if not, why.
func (n hubNames) known(name string) (bool, string) {
	if n.table != nil {
		_, ok := n.table.Lookup(name)
		return ok, fmt.Sprintf("no peer %q in %s", name, n.table.Source())
	}
	if n.glob != "" {
		return true, ""
	}
	var names []string
	for _, p := range n.ports {
		if strings.EqualFold(p.name, name) {
			return true, ""
		}
		names = append(names, p.name)
	}
	return false, fmt.Sprintf("no port called %q (the ports are %s; NAME=PATH names one)", name, strings.Join(names, ", "))
}

// hubForwards splits a hub's forwards: those of each peer (by lower-case
// name), and the -D proxies, which reach every peer. A forward to a peer
// not known is an error when strict (at start), else it is logged and left
// out (a peer removed by SIGHUP takes its forwards with it).
func hubForwards(plan linkPlan, names hubNames, strict bool, log *slog.Logger) (map[string][]forward.Forward, []forward.Forward, error) {
	byPeer := map[string][]forward.Forward{}
	var dynamic []forward.Forward
	for _, fw := range plan.forwards {
		switch {
		case fw.Kind == forward.Dynamic:
			dynamic = append(dynamic, fw)
		case fw.Peer == "" && fw.Kind == forward.Entrance:
			return nil, nil, fmt.Errorf("%v: a hub's entrances are -L SPEC@PEER (--port has no peer to go to)", fw)
		case fw.Peer == "":
			return nil, nil, fmt.Errorf("%v: on a hub, a forward names its peer: add @PEER to the spec", fw)
		default:
			if ok, why := names.known(fw.Peer); !ok {
				err := fmt.Errorf("%v: %s", fw, why)
				if strict {
					return nil, nil, err
				}
				log.Warn("forward left out", "reason", err)
				continue
			}
			low := strings.ToLower(fw.Peer)
			fw.Peer = "" // the peer's own forwarder runs it
			byPeer[low] = append(byPeer[low], fw)
		}
	}
	return byPeer, dynamic, nil
}

// hubState is what a running hub's peers are built from; SIGHUP with a
// --config file replaces it.
type hubState struct {
	mu     sync.Mutex
	plan   linkPlan
	byPeer map[string][]forward.Forward
}

func (s *hubState) forwards(p peers.Peer) []forward.Forward {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byPeer[strings.ToLower(p.Name)]
}

// hubEndpoint is the options of a hub's peer's endpoint, from cur: those
// of a plain end, but for its driver, key and name, which the hub or the
// port sets.
func hubEndpoint(cur linkPlan, allow *forward.Policy) endpoint.Options {
	return endpoint.Options{
		Link: link.Config{
			KeepAlive:        cur.opts.keepAlive,
			DeadTimeout:      cur.opts.deadTimeout,
			ResumeTimeout:    cur.opts.resumeTimeout,
			HandshakeTimeout: cur.opts.handshakeTimeout,
			Compress:         cur.opts.compress,
			FEC:              cur.opts.fec,
			FECBlock:         cur.opts.fecBlock,
		},
		Mux: mux.Config{
			MaxStreams:  cur.opts.maxStreams,
			MaxBuffered: max(mux.DefaultMaxBuffered, cur.opts.maxStreams*mux.InitialWindow),
		},
		Forward: forward.Config{
			LinkWait:       cur.opts.linkWait,
			DialTimeout:    cur.opts.dialTimeout,
			Rules:          cur.rules,
			UDPTimeout:     cur.opts.udpTimeout,
			UDPMaxSessions: cur.opts.udpSessions,
			Allow:          allow,
		},
		Grace: cur.opts.gracePeriod,
	}
}

// runHub runs a hub until SIGINT or SIGTERM: a TCP hub (--listen ADDR
// --peers FILE), or a hub of serial ports (several --comm, --comm-glob).
func runHub(plan linkPlan, log *slog.Logger) error {
	ports := plan.transport.portHub()
	if ports {
		if err := checkPorts(plan); err != nil {
			return err
		}
	} else {
		if err := checkHub(plan); err != nil {
			return err
		}
		if err := checkExposure(plan.transport.listen, true, plan.opts.insecure); err != nil {
			return err
		}
	}
	allow, err := forward.ParseAllow(plan.opts.allow)
	if err != nil {
		return err
	}
	names := hubNames{glob: plan.transport.commGlob}
	var secret []byte
	if ports {
		if names.ports, err = commPorts(plan.transport.ports); err != nil {
			return err
		}
		if plan.opts.secretFile != "" {
			if secret, err = readSecret(plan.opts.secretFile); err != nil {
				return err
			}
		}
	} else if names.table, err = peers.Load(plan.transport.peers); err != nil {
		return err
	}
	byPeer, dynamic, err := hubForwards(plan, names, true, log)
	if err != nil {
		return err
	}
	state := &hubState{plan: plan, byPeer: byPeer}
	cfg := hub.Config{
		Forwards: state.forwards,
		Logger:   log,
	}
	if !ports {
		acc, err := tcpdriver.ListenMany(plan.transport.listen, tcpdriver.AcceptOptions{HelloTimeout: plan.opts.handshakeTimeout})
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		cfg.Acceptor, cfg.Peers = acc, names.table
		cfg.Endpoint = func(p peers.Peer) (endpoint.Options, error) {
			state.mu.Lock()
			cur := state.plan
			state.mu.Unlock()
			return hubEndpoint(cur, allow), nil
		}
	}
	h, err := hub.New(cfg)
	if err != nil {
		if cfg.Acceptor != nil {
			cfg.Acceptor.Close()
		}
		return namedByFlags(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A port's endpoint is a plain --comm end's, with the key of
	// --secret-file (the same for every port) and --half-duplex.
	portsState := &portHubState{auto: map[string]*autoBaud{}}
	portOptions := func() endpoint.Options {
		state.mu.Lock()
		cur := state.plan
		state.mu.Unlock()
		o := hubEndpoint(cur, allow)
		o.Link.Secret = secret
		o.Link.HalfDuplex = cur.opts.halfDuplex
		return o
	}
	attach := func(name, path string) (hub.Attachment, error) {
		return portAttachment(plan, portOptions(), portsState, name, path, log)
	}
	for _, p := range names.ports {
		a, err := attach(p.name, p.path)
		if err == nil {
			_, err = h.Attach(a)
		}
		if err != nil {
			stop()
			_ = h.Run(ctx) // stops the endpoints built
			return namedByFlags(fmt.Errorf("--comm %s: %w", p.path, err))
		}
		log.Info("port", "peer", p.name, "path", p.path)
	}
	for _, fw := range dynamic {
		if _, err := h.AddDynamic(fw.Bind); err != nil {
			stop()
			_ = h.Run(ctx) // stops the endpoints built
			return err
		}
	}
	for i, r := range plan.rules {
		log.Info("exit rule", "n", i+1, "rule", r.String())
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	opsCtx, cancelOps := context.WithCancel(context.Background())
	defer cancelOps()
	opsDone, err := startHubOps(opsCtx, plan, h, portsState, log)
	if err != nil {
		stop()
		_ = h.Run(ctx)
		return err
	}
	defer func() { <-opsDone }()
	defer cancelOps()
	runDone := make(chan error, 1)
	go func() { runDone <- h.Run(ctx) }()
	go func() {
		<-ctx.Done()
		stop() // a second signal now ends the process at once
	}()
	if glob := plan.transport.commGlob; glob != "" {
		go func() {
			err := h.WatchGlob(ctx, glob, hub.GlobOptions{
				Attachment: attach,
				// A port given by --comm, or found by another link to
				// its device, is not taken twice.
				Skip: func(path string) bool {
					var have []string
					for _, m := range h.Peers() {
						have = append(have, m.Path)
					}
					return slices.ContainsFunc(have, func(p string) bool { return sameDevice(p, path) })
				},
			})
			if err != nil {
				log.Error("--comm-glob", "err", err)
			}
		}()
	}
	if ports {
		log.Info("sockmux hub of ports started", "version", version, "ports", len(names.ports), "comm_glob", plan.transport.commGlob)
	} else {
		log.Info("sockmux hub started", "version", version, "listen", h.Addr().String(), "peers", names.table.Len())
	}
	for {
		select {
		case <-hup:
			reloadHub(state, h, names, log)
		case err := <-runDone:
			log.Info("stopped")
			return err
		}
	}
}

// reloadHub applies SIGHUP: the peers file read again, and with --config
// the forwards and rules of each peer.
func reloadHub(state *hubState, h *hub.Hub, names hubNames, log *slog.Logger) {
	state.mu.Lock()
	cur := state.plan
	state.mu.Unlock()
	if cur.reload != nil {
		next, err := cur.reload()
		switch {
		case err != nil:
			log.Error("configuration not reloaded; the hub runs on as it was", "err", err)
		case next.transport.peers != cur.transport.peers:
			log.Warn("--peers changed: the hub reads the new file only when it restarts", "peers", cur.transport.peers)
		case !slices.Equal(next.transport.ports, cur.transport.ports) || next.transport.commGlob != cur.transport.commGlob:
			log.Warn("--comm or --comm-glob changed: the hub takes new ports only when it restarts; --comm-glob picks up ports as they appear")
		default:
			_, before, _ := hubForwards(cur, names, false, log)
			_, after, _ := hubForwards(next, names, false, log)
			if !slices.Equal(before, after) {
				log.Warn("a hub's -D proxies apply only when it restarts; they keep their running values")
			}
			cur.forwards, cur.rules = next.forwards, next.rules
		}
	}
	if names.table != nil {
		tb, err := peers.Load(cur.transport.peers)
		if err != nil {
			log.Error("peers file not reloaded; the hub serves the peers it had", "err", err)
			return
		}
		names.table = tb
	}
	byPeer, _, err := hubForwards(cur, names, false, log)
	if err != nil {
		log.Error("forwards not reloaded", "err", err)
		state.mu.Lock()
		byPeer = state.byPeer
		state.mu.Unlock()
	} else {
		state.mu.Lock()
		state.plan, state.byPeer = cur, byPeer
		state.mu.Unlock()
	}
	if tb := names.table; tb != nil {
		ch, err := h.Reload(tb)
		if err != nil {
			log.Error("peers file reloaded in part", "err", err)
		}
		log.Info("peers file reloaded", "peers", tb.Len(), "added", strings.Join(ch.Added, ","),
			"removed", strings.Join(ch.Removed, ","), "rekeyed", strings.Join(ch.Rekeyed, ","))
	}
	for _, m := range h.Peers() {
		if _, err := m.Endpoint.Forwarder.Apply(byPeer[strings.ToLower(m.Peer.Name)], cur.rules); err != nil {
			m.Endpoint.Logger().Error("forwards reloaded in part", "err", err)
		}
	}
}
