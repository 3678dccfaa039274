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

// hubForwards splits a hub's forwards: those of each peer (by lower-case
// name), and the -D proxies, which reach every peer. A forward to a peer
// not in tb is an error when strict (at start), else it is logged and left
// out (a peer removed by SIGHUP takes its forwards with it).
func hubForwards(plan linkPlan, tb *peers.Table, strict bool, log *slog.Logger) (map[string][]forward.Forward, []forward.Forward, error) {
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
			if _, ok := tb.Lookup(fw.Peer); !ok {
				err := fmt.Errorf("%v: no peer %q in %s", fw, fw.Peer, tb.Source())
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

// runHub runs a hub (--listen ADDR --peers FILE) until SIGINT or SIGTERM.
func runHub(plan linkPlan, log *slog.Logger) error {
	if err := checkHub(plan); err != nil {
		return err
	}
	if err := checkExposure(plan.transport.listen, true, plan.opts.insecure); err != nil {
		return err
	}
	allow, err := forward.ParseAllow(plan.opts.allow)
	if err != nil {
		return err
	}
	tb, err := peers.Load(plan.transport.peers)
	if err != nil {
		return err
	}
	byPeer, dynamic, err := hubForwards(plan, tb, true, log)
	if err != nil {
		return err
	}
	state := &hubState{plan: plan, byPeer: byPeer}
	acc, err := tcpdriver.ListenMany(plan.transport.listen, tcpdriver.AcceptOptions{HelloTimeout: plan.opts.handshakeTimeout})
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	h, err := hub.New(hub.Config{
		Acceptor: acc,
		Peers:    tb,
		Endpoint: func(p peers.Peer) (endpoint.Options, error) {
			state.mu.Lock()
			cur := state.plan
			state.mu.Unlock()
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
			}, nil
		},
		Forwards: state.forwards,
		Logger:   log,
	})
	if err != nil {
		acc.Close()
		return namedByFlags(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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
	opsDone, err := startHubOps(opsCtx, plan, h, log)
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
	log.Info("sockmux hub started", "version", version, "listen", h.Addr().String(), "peers", tb.Len())
	for {
		select {
		case <-hup:
			reloadHub(state, h, log)
		case err := <-runDone:
			log.Info("stopped")
			return err
		}
	}
}

// reloadHub applies SIGHUP: the peers file read again, and with --config
// the forwards and rules of each peer.
func reloadHub(state *hubState, h *hub.Hub, log *slog.Logger) {
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
		default:
			_, before, _ := hubForwards(cur, h.Table(), false, log)
			_, after, _ := hubForwards(next, h.Table(), false, log)
			if !slices.Equal(before, after) {
				log.Warn("a hub's -D proxies apply only when it restarts; they keep their running values")
			}
			cur.forwards, cur.rules = next.forwards, next.rules
		}
	}
	tb, err := peers.Load(cur.transport.peers)
	if err != nil {
		log.Error("peers file not reloaded; the hub serves the peers it had", "err", err)
		return
	}
	byPeer, _, err := hubForwards(cur, tb, false, log)
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
	ch, err := h.Reload(tb)
	if err != nil {
		log.Error("peers file reloaded in part", "err", err)
	}
	log.Info("peers file reloaded", "peers", tb.Len(), "added", strings.Join(ch.Added, ","),
		"removed", strings.Join(ch.Removed, ","), "rekeyed", strings.Join(ch.Rekeyed, ","))
	for _, m := range h.Peers() {
		if _, err := m.Endpoint.Forwarder.Apply(byPeer[strings.ToLower(m.Peer.Name)], cur.rules); err != nil {
			m.Endpoint.Logger().Error("forwards reloaded in part", "err", err)
		}
	}
}
