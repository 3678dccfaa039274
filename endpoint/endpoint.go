package endpoint

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/sockmux/sockmux/dgwire"
	"github.com/sockmux/sockmux/forward"
	"github.com/sockmux/sockmux/link"
	"github.com/sockmux/sockmux/mux"
)

// Options is everything an endpoint is built from.
type Options struct {
	// Driver opens the transport (tcpdriver, serialport, pipe,
	// procdriver, or a test's). Required. The endpoint owns it: it is
	// closed, if it has a Close method, when the endpoint stops.
	Driver link.Driver
	// Link configures the link layer. Nil Services name the
	// forwarder's (forward.ServiceNames: its own and Forward.Services)
	// unless AcceptStreams is set.
	Link link.Config
	// Mux configures the multiplexer. Its hooks (Notify, OnListen,
	// OnUnlisten, OnSessionEnd) are the endpoint's to set and must be
	// nil. A zero StreamWindow is sized to the transport (StreamWindow).
	Mux mux.Config
	// Forward configures the forwarder. Its LinkCounters is the
	// endpoint's to set and must be nil.
	Forward forward.Config
	// AcceptStreams leaves the streams the far end opens to the caller,
	// who takes them with Mux.AcceptStream, instead of the forwarder's Serve:
	// for using sockmux as a library, and for benchmarks and tests.
	AcceptStreams bool
	// Grace is how long Run, once its context ends, lets the connections
	// under way finish before it resets them. Zero resets them at once.
	Grace time.Duration
	// Logger is the logger of every layer whose own Logger is nil, and
	// of the endpoint; nil means slog.Default().
	Logger *slog.Logger
}

// Endpoint is one end of a link, its layers built and wired.
type Endpoint struct {
	Driver    link.Driver
	Link      *link.Link
	Mux       *mux.Mux
	Forwarder *forward.Forwarder
	DeleGate  *dgwire.Link // the layer under the mux instead of Link with NewDeleGate (wire.go); Link is nil then

	lower lower // Link or DeleGate

	grace time.Duration
	serve bool // Run runs the forwarder's Serve
	log   *slog.Logger
	stop  chan stopRequest // the first Stop's request
	once  sync.Once        // closes the driver once
}

type stopRequest struct {
	grace  time.Duration
	reason string
}

// goodbye is what the far end is told when Run's context ends.
const goodbye = "peer shut down"

// Linger bounds how long a stopping endpoint waits for its goodbye to
// the far end to go out.
const Linger = 2 * time.Second

// StreamWindow sizes each stream's receive window to the transport:
// seconds of a slow line, 1 MiB on fast transports, at most 4 MiB.
func StreamWindow(p link.Properties) int {
	if p.LineRate == 0 {
		return 1 << 20
	}
	return max(mux.InitialWindow, min(4<<20, 2*p.LineRate))
}

// New builds an endpoint from opts. Nothing runs until Run. Options out of
// range are an error naming the field (link.Config.Verify,
// mux.Config.Verify), never clamped.
func New(opts Options) (*Endpoint, error) {
	switch {
	case opts.Driver == nil:
		return nil, errors.New("endpoint: no driver (Options.Driver)")
	case opts.Mux.Notify != nil:
		return nil, errors.New("endpoint: Options.Mux.Notify is set; the endpoint wires the mux to its link, leave it nil")
	case opts.Mux.OnListen != nil || opts.Mux.OnUnlisten != nil || opts.Mux.OnSessionEnd != nil:
		return nil, errors.New("endpoint: Options.Mux.OnListen, OnUnlisten or OnSessionEnd is set; they are the forwarder's, leave them nil")
	case opts.Forward.LinkCounters != nil:
		return nil, errors.New("endpoint: Options.Forward.LinkCounters is set; the endpoint gives the forwarder its link's counters, leave it nil")
	case opts.Grace < 0:
		return nil, errors.New("endpoint: negative grace period (Options.Grace)")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Link.Logger == nil {
		opts.Link.Logger = log
	}
	if opts.Mux.Logger == nil {
		opts.Mux.Logger = log
	}
	if opts.Forward.Logger == nil {
		opts.Forward.Logger = log
	}
	if opts.Mux.StreamWindow == 0 {
		opts.Mux.StreamWindow = StreamWindow(opts.Driver.Properties())
	}
	if opts.Link.Services == nil && !opts.AcceptStreams {
		// The forwarder serves the far end's streams: its services too.
		opts.Link.Services = forward.ServiceNames(opts.Forward)
	}
	// The layers' own checks, once, with the reason: New of link and mux
	// would clamp an out-of-range value silently.
	if err := opts.Link.Verify(); err != nil {
		return nil, err
	}
	if err := opts.Mux.Verify(); err != nil {
		return nil, err
	}
	e := &Endpoint{Driver: opts.Driver, grace: opts.Grace, serve: !opts.AcceptStreams, log: log, stop: make(chan stopRequest, 1)}
	// The hooks call into layers made below; see the package comment.
	mcfg := opts.Mux
	mcfg.Notify = func() { e.Link.Notify() }
	mcfg.OnListen = func(r mux.ListenRequest) error { return e.Forwarder.OnListen(r) }
	mcfg.OnUnlisten = func(r mux.ListenRequest) error { return e.Forwarder.OnUnlisten(r) }
	mcfg.OnSessionEnd = func(reason error) { e.Forwarder.OnSessionEnd(reason) }
	e.Mux = mux.New(mcfg)
	e.Link = link.New(opts.Driver, e.Mux, opts.Link)
	e.lower = e.Link
	fcfg := opts.Forward
	st := e.Link.Stats()
	fcfg.LinkCounters = func() forward.LinkCounters { return forward.CountersOf(st) }
	e.Forwarder = forward.New(e.Mux, fcfg)
	return e, nil
}

// Run runs the link and serves the far end's streams (unless
// Options.AcceptStreams) until ctx ends, Stop
// is called, or the link fails; then it shuts the endpoint down (see Stop)
// and returns. It returns the link's error if the link failed, else nil.
// Run once.
func (e *Endpoint) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	linkDone := make(chan error, 1)
	go func() { linkDone <- e.lower.Run(runCtx) }()
	served := make(chan struct{})
	go func() {
		defer close(served)
		if e.serve {
			_ = e.Forwarder.Serve(runCtx)
		}
	}()
	var req stopRequest
	select {
	case <-ctx.Done():
		req = stopRequest{e.grace, goodbye}
	case req = <-e.stop:
	case err := <-linkDone:
		e.Forwarder.Close()
		e.Mux.Close()
		cancel()
		<-served
		e.closeDriver()
		return err
	}
	e.shutdown(req)
	cancel()
	<-linkDone
	<-served
	e.closeDriver()
	return nil
}

// Logger is the endpoint's logger (Options.Logger, or slog.Default()).
func (e *Endpoint) Logger() *slog.Logger { return e.log }

// Stop makes Run shut the endpoint down: the forwarder stops taking
// connections, those under way get grace to finish, then the mux resets
// what is left, the link tells the far end reason (waiting up to Linger
// for it to go out) and closes, and the driver is closed. Stop does not
// wait; Run returns when it is done. Only the first Stop counts.
func (e *Endpoint) Stop(grace time.Duration, reason string) {
	select {
	case e.stop <- stopRequest{max(grace, 0), reason}:
	default:
	}
}

// Close stops an endpoint that never ran (say, a forward failed to
// start): it closes the forwarder, the mux, the link and the driver.
func (e *Endpoint) Close() {
	e.Forwarder.Close()
	e.Mux.Close()
	e.lower.Close("closed", 0)
	e.closeDriver()
}

// shutdown stops the layers from the top down.
func (e *Endpoint) shutdown(req stopRequest) {
	e.log.Info("shutting down", "open_streams", e.Mux.NumStreams(), "grace", req.grace)
	e.Forwarder.Close()
	if req.grace > 0 {
		graceCtx, cancel := context.WithTimeout(context.Background(), req.grace)
		if err := e.Forwarder.Wait(graceCtx); err != nil {
			e.log.Warn("grace period over; resetting connections still open", "open_streams", e.Mux.NumStreams())
		}
		cancel()
	}
	e.Mux.Close()
	e.lower.Close(req.reason, Linger)
}

func (e *Endpoint) closeDriver() {
	e.once.Do(func() {
		if c, ok := e.Driver.(io.Closer); ok {
			_ = c.Close()
		}
	})
}
