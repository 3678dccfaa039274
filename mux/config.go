package mux

import (
	"log/slog"
)

// Config tunes a Mux.
type Config struct {
	// StreamWindow is the largest receive window of a stream: how much
	// the far end may send ahead of our reader. A stream starts with
	// InitialWindow, and its window doubles up to StreamWindow while its
	// sender runs short of credit and its reader keeps up, as far as
	// MaxBuffered allows. At least InitialWindow.
	StreamWindow int
	// MaxStreams bounds the streams open at once (both directions),
	// counting inbound streams the far end already ended but the
	// application has not yet accepted, reset or closed. 0 means
	// DefaultMaxStreams.
	MaxStreams int
	// MaxBuffered is the receive buffer budget of the link: the sum of the
	// receive windows of all streams (what the far end may send ahead of
	// our readers) never exceeds it. Each stream takes InitialWindow of it
	// when it opens and more as far as it goes up to StreamWindow; an open
	// that does not fit is refused (CodeLimit). 0 means DefaultMaxBuffered.
	MaxBuffered int
	// AcceptBacklog bounds inbound streams not yet taken by Accept; 0
	// means DefaultAcceptBacklog. It is never more than MaxStreams.
	AcceptBacklog int
	// MaxListens bounds the far end's listen requests (remote forwards)
	// served per session; 0 means DefaultMaxListens.
	MaxListens int
	// MaxReplyQueue bounds the bytes of answers to the far end's requests
	// (refusals of streams, listen results, resets for protocol errors)
	// waiting to be sent. A far end that makes them pile up beyond it,
	// sending requests faster than it takes the answers, breaks the
	// protocol and the session is abandoned. 0 means DefaultMaxReplyQueue.
	MaxReplyQueue int
	// OnListen is called (in its own goroutine) when the far end asks
	// us to listen for it (a remote forward); its error goes back.
	OnListen func(ListenRequest) error
	// OnUnlisten is called when the far end asks us to close the
	// listener it had us open with the request's Tag (it dropped that
	// remote forward); its error goes back. Calls of OnListen and
	// OnUnlisten are made one at a time, in the order the far end's
	// requests came.
	OnUnlisten func(ListenRequest) error
	// OnSessionEnd is called when the link's session ends, after every
	// stream of it was reset.
	OnSessionEnd func(reason error)
	// Notify wakes the link's sender when the mux has something to send
	// (link.Link.Notify); it must not block. Nil means no one is woken,
	// as in tests that pull Fill themselves.
	Notify func()
	// Logger receives the mux's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Defaults of the limits in Config.
const (
	DefaultMaxStreams    = 4096
	DefaultMaxBuffered   = DefaultMaxStreams * InitialWindow // 256 MiB
	DefaultAcceptBacklog = 16384                             // capped at MaxStreams
	DefaultMaxListens    = 64
	DefaultMaxReplyQueue = 256 << 10
)
