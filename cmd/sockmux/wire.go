package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/dgwire"
	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/link"
)

// wireFlag chooses what the link speaks: sockmux's own wire, or DeleGate
// 9.x SockMux to a delegated at the other end (issue 18).
func wireFlag() cli.Flag {
	return &cli.StringFlag{Name: "wire", Value: endpoint.WireSockmux,
		Usage:    "what the link speaks: sockmux (both ends sockmux), or delegate: DeleGate 9.x SockMux, to a delegated at the other end (no integrity checks, resumption or authentication; TCP connections only; see docs/delegate.md)",
		Category: "Link"}
}

// wireName checks a --wire value.
func wireName(v string) error {
	switch v {
	case endpoint.WireSockmux, endpoint.WireDeleGate:
		return nil
	}
	return reason("want one of " + endpoint.WireSockmux + ", " + endpoint.WireDeleGate)
}

// checkWire checks the options against --wire before anything is opened.
func checkWire(plan linkPlan, keyed bool) error {
	switch plan.opts.wire {
	case endpoint.WireSockmux, "":
		return nil
	case endpoint.WireDeleGate:
	default:
		return fmt.Errorf("--wire %q: sockmux or delegate", plan.opts.wire)
	}
	if keyed {
		return fmt.Errorf("--wire delegate: a DeleGate peer has no authentication, so --secret-file cannot be used with it")
	}
	switch {
	case plan.opts.halfDuplex:
		return fmt.Errorf("--wire delegate: --half-duplex is sockmux's own link; a DeleGate peer does not take turns on the line")
	case plan.opts.compress == link.CompressFast || plan.opts.compress == link.CompressBest:
		return fmt.Errorf("--wire delegate: --compress is sockmux's own link; a DeleGate tunnel is not compressed")
	}
	if plan.transport.stdio || plan.transport.exec != "" {
		return fmt.Errorf("--wire delegate runs over --listen, --connect, --comm or --commin/--commout, as DeleGate's SockMux does")
	}
	for _, fw := range plan.forwards {
		switch {
		case fw.Kind == forward.Remote:
			return fmt.Errorf("--wire delegate: %v: a DeleGate peer cannot listen for this end (-R); give it PORT= and this end --server rules instead", fw)
		case fw.Kind == forward.Dynamic:
			return fmt.Errorf("--wire delegate: %v: a DeleGate peer cannot be told a destination (-D); give this end --port and the DeleGate a SERVER=...,-in rule, or put the proxy at the DeleGate's side", fw)
		case fw.Network == "udp":
			return fmt.Errorf("--wire delegate: %v: sockmux carries only TCP over a DeleGate tunnel", fw)
		}
	}
	if l := plan.transport.listen; l != "" && !plan.opts.insecure {
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			return fmt.Errorf("--listen %q: %w", l, err)
		}
		if !isLoopback(host) {
			return fmt.Errorf("--listen %s accepts peers from other hosts, and a DeleGate tunnel has no authentication: anyone who connects gets a tunnel into this one; give --insecure to run so anyway (DeleGate does)", l)
		}
	}
	return nil
}

// newEndpoint builds the endpoint for the plan's wire.
func newEndpoint(plan linkPlan, opts endpoint.Options) (*endpoint.Endpoint, error) {
	if plan.opts.wire != endpoint.WireDeleGate {
		return endpoint.New(opts)
	}
	return endpoint.NewDeleGate(opts, dgwire.Config{
		HandshakeTimeout: plan.opts.handshakeTimeout,
		KeepAlive:        plan.opts.keepAlive,
		MaxAgents:        min(plan.opts.maxStreams, 250),
		Logger:           opts.Logger,
	})
}

// logStarted logs that the link started.
func logStarted(log *slog.Logger, ep *endpoint.Endpoint) {
	if ep.Link == nil {
		log.Info("sockmux link started", "version", version, "transport", ep.Driver.String(), "wire", endpoint.WireDeleGate)
		return
	}
	cfg := ep.Link.Config()
	log.Info("sockmux link started", "version", version, "transport", ep.Driver.String(),
		"frame_payload", cfg.MaxPayload, "window", cfg.Window)
}

// applyWireParam sets --wire from sockmux delegate's WIRE= parameter,
// unless --wire was given too, and adds it to the equivalent command's
// options.
func applyWireParam(set *flag.FlagSet, wire string, options []string) ([]string, error) {
	if wire == "" || isSet(set, "wire") {
		return options, nil
	}
	if err := set.Set("wire", wire); err != nil {
		return options, err
	}
	return append(options, "--wire", wire), nil
}
