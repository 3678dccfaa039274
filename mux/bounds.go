package mux

import (
	"fmt"
	"unicode/utf8"

	"github.com/sockmux/sockmux/link"
)

// maxControl bounds every message but DATA, so that one always fits a
// payload whole: the link offers Fill at least link.MinPayload bytes, less
// its codec header.
const maxControl = link.MinPayload - 32

// Bounds on the fields of control messages; with them no message exceeds
// maxControl (TestControlMessagesFitAPayload).
const (
	maxAddrLen   = 261 // a destination or bind "host:port": a DNS name is at most 253 bytes
	maxClientLen = 64  // a client's "[ip%zone]:port"
	maxNameLen   = 32  // a network, protocol hint or service name
	maxTextLen   = 150 // a reset reason or a listen error, clipped to it
)

// check refuses an Info whose OPEN would not fit a payload.
func (info Info) check() error {
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"network", info.Network, maxNameLen},
		{"destination", info.Dest, maxAddrLen},
		{"client address", info.Client, maxClientLen},
		{"protocol hint", info.Proto, maxNameLen},
		{"service", info.Service, maxNameLen},
	} {
		if len(f.v) > f.max {
			return fmt.Errorf("stream %s of %d bytes (at most %d)", f.name, len(f.v), f.max)
		}
	}
	return nil
}

// clipText shortens a reason to maxTextLen bytes, on a character
// boundary, marking the cut.
func clipText(s string) string {
	if len(s) <= maxTextLen {
		return s
	}
	cut := maxTextLen - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
