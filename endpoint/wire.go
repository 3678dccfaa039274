package endpoint

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sockmux/sockmux/dgwire"
	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/mux"
)

// lower is the layer under the mux that an endpoint runs: sockmux's link,
// or DeleGate's SockMux wire.
type lower interface {
	Run(ctx context.Context) error
	Close(reason string, linger time.Duration)
}

// Wires an end may speak.
const (
	WireSockmux  = "sockmux"
	WireDeleGate = "delegate"
)

// DeleGateWarning is logged when an end speaks DeleGate's wire.
const DeleGateWarning = "speaking DeleGate's SockMux 0.3 (--wire delegate): the peer has none of sockmux's integrity checks, resumption or authentication; " +
	"a broken transport closes every connection, and anyone who reaches the tunnel gets in"

// NewDeleGate builds an endpoint whose far end is a DeleGate 9.x speaking
// SockMux (protocol version 0.3): the mux and the forwarder as New builds
// them, over dgwire instead of the link. opts.Link is not used but for its
// Secret, which a DeleGate peer cannot use: NewDeleGate refuses it. The
// streams take DeleGate's flow control (a window of mux.InitialWindow,
// 4 PACKSIZE); there are no services, remote forwards (-R) or UDP.
func NewDeleGate(opts Options, dg dgwire.Config) (*Endpoint, error) {
	switch {
	case opts.Driver == nil:
		return nil, errors.New("endpoint: no driver (Options.Driver)")
	case opts.Link.Secret != nil:
		return nil, errors.New("a DeleGate peer has no authentication: --secret-file cannot be used with --wire delegate")
	case opts.Mux.Notify != nil || opts.Mux.OnListen != nil || opts.Mux.OnUnlisten != nil || opts.Mux.OnSessionEnd != nil:
		return nil, errors.New("endpoint: Options.Mux hooks are set; the endpoint wires them, leave them nil")
	case opts.Forward.LinkCounters != nil:
		return nil, errors.New("endpoint: Options.Forward.LinkCounters is set; leave it nil")
	case opts.Grace < 0:
		return nil, errors.New("endpoint: negative grace period (Options.Grace)")
	}
	e := &Endpoint{Driver: opts.Driver, grace: opts.Grace, serve: !opts.AcceptStreams, stop: make(chan stopRequest, 1)}
	e.log = opts.Logger
	if e.log == nil {
		e.log = slog.Default()
	}
	for _, l := range []**slog.Logger{&opts.Mux.Logger, &opts.Forward.Logger, &dg.Logger} {
		if *l == nil {
			*l = e.log
		}
	}
	e.log.Warn(DeleGateWarning, "transport", opts.Driver.String())
	if p := opts.Driver.Properties(); !p.Reliable {
		e.log.Warn("DeleGate's SockMux over a line that is not reliable (a serial line): noise reaches the connections as DeleGate delivers it, and a damaged packet header ends the tunnel and every connection")
	}
	mcfg := opts.Mux
	mcfg.StreamWindow = mux.InitialWindow // DeleGate's flow control: 4 PACKSIZE
	mcfg.Notify = func() { e.DeleGate.Notify() }
	mcfg.OnListen = func(r mux.ListenRequest) error { return e.Forwarder.OnListen(r) }
	mcfg.OnUnlisten = func(r mux.ListenRequest) error { return e.Forwarder.OnUnlisten(r) }
	mcfg.OnSessionEnd = func(reason error) { e.Forwarder.OnSessionEnd(reason) }
	e.Mux = mux.New(mcfg)
	e.DeleGate = dgwire.New(opts.Driver, e.Mux, dg)
	e.lower = e.DeleGate
	e.Forwarder = forward.New(e.Mux, opts.Forward)
	return e, nil
}
