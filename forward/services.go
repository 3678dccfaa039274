package forward

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/sockmux/sockmux/mux"
)

// ServiceTestLink is the link test's service (diag.go).
const ServiceTestLink = "test-link"

// Services are the services a Forwarder serves over streams, by the name
// an opener gives in mux.Info.Service: what an end that runs a forwarder
// names in its hello (link.Config.Services).
func Services() []string { return []string{ServiceTestLink} }

// ServiceNames are the services a Forwarder made with cfg serves: this
// package's own (Services) and cfg.Services', in order of name.
func ServiceNames(cfg Config) []string {
	names := Services()
	var extra []string
	for n := range cfg.Services {
		if !slices.Contains(names, n) {
			extra = append(extra, n)
		}
	}
	slices.Sort(extra)
	return append(names, extra...)
}

// serveService serves a stream opened for one of this end's services
// (info.Service) instead of a destination.
func (f *Forwarder) serveService(ctx context.Context, s *mux.Stream, log *slog.Logger) {
	switch svc := s.Info().Service; svc {
	case ServiceTestLink:
		serveDiag(ctx, f.m, s, f.cfg.LinkCounters, log)
	default:
		if h := f.cfg.Services[svc]; h != nil {
			h(ctx, s)
			return
		}
		reason := fmt.Sprintf("this end serves no service %q", svc)
		log.Warn("stream refused", "reason", reason)
		s.Reset(mux.CodeNoRoute, reason)
	}
}
