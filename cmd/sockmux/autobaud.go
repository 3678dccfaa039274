package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/sockmux/sockmux/autobaud"
	"github.com/sockmux/sockmux/endpoint"
	"github.com/sockmux/sockmux/mux"
	"github.com/sockmux/sockmux/serialport"
)

// checkAutoBaud refuses --baud auto where it cannot work: on anything but
// a serial port, on a half-duplex line, on the DeleGate wire.
func checkAutoBaud(plan linkPlan) error {
	o := plan.opts
	if !o.autoBaud {
		return nil
	}
	// A hub's ports: each serial one runs it (portAttachment).
	serial := plan.transport.portHub() || plan.transport.comm != "" && serialport.IsSerial(plan.transport.comm)
	switch {
	case !serial:
		return errors.New("--baud auto is for a serial port (--comm with a serial device): TCP, pipes, --stdio and --exec have no line speed to find")
	case o.halfDuplex:
		return errors.New("--baud auto cannot go with --half-duplex: the turns are timed by a fixed line rate; give both ends the same --baud")
	case o.wire == endpoint.WireDeleGate:
		return errors.New("--baud auto needs sockmux's own link at both ends, not --wire delegate")
	case o.baudMax != 0 && o.baudMax < o.baudStart:
		return fmt.Errorf("--baud-max %d is below --baud-start %d", o.baudMax, o.baudStart)
	}
	return nil
}

// autoBaud is --baud auto at this end: the controller and what it needs.
type autoBaud struct {
	ctl  *autobaud.Controller
	mode serialport.Mode
	ep   *endpoint.Endpoint
}

// newAutoBaud finds the rates drv's port accepts and prepares the
// controller; bind gives it the endpoint, run runs it.
func newAutoBaud(plan linkPlan, drv *serialport.Driver, log *slog.Logger) *autoBaud {
	o := plan.opts
	var want []int
	for _, r := range autobaud.Rates {
		if o.baudMax == 0 || r <= o.baudMax {
			want = append(want, r)
		}
	}
	if !slices.Contains(want, o.baudStart) {
		want = append(want, o.baudStart)
		slices.Sort(want)
	}
	rates := drv.AcceptedSpeeds(want)
	var refused []int
	for _, r := range want {
		if !slices.Contains(rates, r) {
			refused = append(refused, r)
		}
	}
	msg := fmt.Sprintf("--baud auto: starting at %d baud; the port accepts %s", o.baudStart, rateList(rates))
	if len(refused) > 0 {
		msg += "; refuses " + rateList(refused)
	}
	log.Info(msg)
	a := &autoBaud{mode: drv.Mode()}
	// Silence: longer than the keepalive, so that an idle line is not
	// taken for a silent one (the link pings after KeepAlive).
	keep := o.keepAlive
	if keep == 0 {
		keep = time.Second
	}
	a.ctl = autobaud.New(autobaud.Config{
		Start: o.baudStart, Rates: rates, BitsPerByte: drv.Mode().BitsPerByte(),
		Silence: max(3*time.Second, 3*keep), Logger: log,
	}, drv, lateLine{a}, a.open)
	return a
}

// services is the negotiation's service, for forward.Config.Services.
func (a *autoBaud) services() map[string]func(context.Context, *mux.Stream) {
	return map[string]func(context.Context, *mux.Stream){
		autobaud.Service: func(_ context.Context, s *mux.Stream) {
			s.Accept()
			a.ctl.Attach(s)
		},
	}
}

// open opens the negotiation stream to the far end (the leader's).
func (a *autoBaud) open(ctx context.Context) (io.ReadWriteCloser, error) {
	s, err := a.ep.Mux.Open(ctx, mux.Info{Service: autobaud.Service, Client: "sockmux --baud auto"})
	if err != nil {
		return nil, err
	}
	if err := s.WaitAccepted(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// bind gives the controller the endpoint's link, before run.
func (a *autoBaud) bind(ep *endpoint.Endpoint) { a.ep = ep }

// run runs the controller until ctx ends.
func (a *autoBaud) run(ctx context.Context) { a.ctl.Run(ctx) }

// line describes the line now for status, e.g. "921600 baud 8N1, flow
// none (auto: verified both ways, 3 steps)".
func (a *autoBaud) line() string {
	st := a.ctl.Status()
	m := a.mode
	m.Baud = st.Rate
	return lineSettings(m) + " (auto: " + st.How + ")"
}

// lateLine is the endpoint's link as the controller's Line, once bind
// gave it (the controller is made before the endpoint, whose forwarder
// serves its stream; it runs only after bind).
type lateLine struct{ a *autoBaud }

func (l lateLine) line() autobaud.Line         { return autobaud.FromLink(l.a.ep.Link) }
func (l lateLine) SetLineRate(r int) error     { return l.line().SetLineRate(r) }
func (l lateLine) Counters() autobaud.Counters { return l.line().Counters() }
func (l lateLine) Up() bool                    { return l.line().Up() }
func (l lateLine) UpSince() time.Time          { return l.line().UpSince() }
func (l lateLine) Leader() (bool, bool)        { return l.line().Leader() }
func (l lateLine) PeerServes(s string) bool    { return l.line().PeerServes(s) }
func (l lateLine) RTT() time.Duration          { return l.line().RTT() }

// rateList formats rates for a log line.
func rateList(rates []int) string {
	if len(rates) == 0 {
		return "none"
	}
	s := ""
	for i, r := range rates {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprint(r)
	}
	return s
}
