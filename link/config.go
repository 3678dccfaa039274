package link

import (
	"fmt"
	"log/slog"
	"time"
)

// Upper is the layer above the link (the stream multiplexer). The link
// pulls outgoing payloads from it when the line can take a frame, so what
// is sent is chosen at the last moment, and pushes received payloads to it
// exactly once and in order.
type Upper interface {
	// SessionStart is called when a handshake completes, before any
	// payload of that session is delivered or pulled.
	SessionStart(s SessionInfo)
	// SessionEnd is called when the current session is over (the peer
	// restarted or closed it): nothing of it will be delivered or sent.
	SessionEnd(reason error)
	// Fill writes the next outgoing payload into p and returns its length,
	// 0 when there is nothing to send, and what it carries. It must not
	// block. p has room for the largest payload the peer accepts, at least
	// MinPayload bytes; budget (at most len(p)) is the payload size the
	// link wants now, for the line's error rate and interactive traffic.
	// The upper layer puts only whole messages in a payload: it stops
	// adding bulk once budget is used, but a message of its own that does
	// not fit budget may use the rest of p (the link fragments long
	// payloads on the wire itself). It must keep its messages no longer
	// than MinPayload.
	Fill(p []byte, budget int) (int, Class)
	// Deliver hands over one received payload; p is valid only during the
	// call. An error is a protocol violation by the peer and ends the
	// session.
	Deliver(p []byte) error
}

// Class is what a payload the upper layer filled carries; the link sizes
// frames by it.
type Class uint8

// The classes of payloads.
const (
	// ClassBulk is stream data that may wait behind other data.
	ClassBulk Class = iota
	// ClassInteractive carries small writes someone waits for
	// (keystrokes). For interactiveSpell after one, frames on a paced
	// line are kept short (interactiveFrameTime), so that a frame that
	// cannot be cut (one already cut once, which must get through)
	// delays the next keystroke little.
	ClassInteractive
	// ClassControl carries only the upper layer's own control messages;
	// the link sends it like bulk.
	ClassControl
	// ClassBulkQuiet is bulk data, and no stream whose data went out as
	// interactive lately can send more of it (each closed, or turned
	// bulk): the interactive spell ends at once, and frames on a paced
	// line go back to full length. Without it, a download that followed
	// a small reply (an HTTP header, a 64-byte answer) went its first
	// three seconds in short frames.
	ClassBulkQuiet
)

func (c Class) String() string {
	switch c {
	case ClassBulk:
		return "bulk"
	case ClassInteractive:
		return "interactive"
	case ClassControl:
		return "control"
	case ClassBulkQuiet:
		return "bulk, quiet"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// interactiveSpell is how long after an interactive payload the link keeps
// its frames on a paced line short.
const interactiveSpell = 3 * time.Second

// Preempter is implemented by an upper layer that can send interactive
// data ahead of the payload Fill returned last. On a paced line the link
// then cuts a long frame short when Urgent reports such data, sends a
// short frame filled by FillUrgent in its place, and the cut payload
// right after it.
type Preempter interface {
	Urgent() bool
	FillUrgent(p []byte) int
}

// interactiveFrameTime bounds a frame's time on a slow line while
// interactive traffic shares it.
const interactiveFrameTime = 30 * time.Millisecond

// SessionInfo describes an established session.
type SessionInfo struct {
	Local, Peer uint64 // the two ends' session ids
	Resumed     bool   // true when an existing session continued
	MaxPayload  int    // the largest payload Fill is offered
}

// Config tunes a link. Zero values pick defaults from the driver's
// Properties; see DefaultConfig.
type Config struct {
	// MaxPayload is the largest payload of one data frame.
	MaxPayload int
	// Window is how many frames may be sent and not yet acknowledged.
	Window int
	// KeepAlive is how long the line may stay silent before a ping.
	KeepAlive time.Duration
	// DeadTimeout is how long without hearing the peer before the
	// transport is declared dead, closed and opened again.
	DeadTimeout time.Duration
	// HandshakeTimeout bounds one handshake attempt on one transport.
	HandshakeTimeout time.Duration
	// ResumeTimeout is how long a session waits for its transport to come
	// back: after that long without the link, the session ends (its
	// streams are reset with a *GoneError) and the next transport starts
	// a new one. Zero waits for ever. A connector whose redial is refused
	// ends the session at once: no process holds it any more.
	ResumeTimeout time.Duration
	// Secret, when set (KeySize bytes), requires the peer to prove it
	// holds the same key, and encrypts and authenticates every frame.
	Secret []byte
	// AEADs are the ciphers this end offers for sealing frames when Secret
	// is set, best first; empty means DefaultAEADs (by this CPU). The
	// handshake picks one both ends offer (see docs/security.md).
	AEADs []AEAD
	// legacyAuth makes this end behave as one from before the AEAD was
	// negotiated (an empty offer and an empty choice), for tests.
	legacyAuth bool
	// Compress is how DATA payloads are compressed (CompressAuto: by
	// the transport). Compression is used when both ends offer it.
	Compress Compression
	// FEC is whether the link offers forward error correction on lines
	// (FECAuto: on transports that are not reliable). It is used when
	// both ends offer it (docs/fec.md).
	FEC FECMode
	// FECBlock is the FEC codeword length this end reads, fec.MinBlock to
	// fec.DefaultBlock bytes; 0 picks by the line rate (64 below 19200
	// baud, 255 above). The peer writes its blocks in that length.
	FECBlock int
	// Services are the services this end serves over streams (the
	// forwarder's, e.g. "test-link"), named in its hello so that the far
	// end knows what it may ask for (PeerServices). Each is a short
	// name of printable ASCII without commas.
	Services []string
	// Name is the name this end gives in its hello (sockmux link --name
	// on an end that connects to a hub): in the clear, like an ssh user
	// name, and bound into the key proof with the rest of the hello, so it
	// cannot be swapped on the way. 1 to MaxName letters, digits, '-' and
	// '_'; empty gives none.
	Name string
	// PeerName, when set, is the name the peer's hello must carry (a hub's
	// end for one peer); a peer that gives another name, or none, is
	// refused. Names are matched without regard to case.
	PeerName string
	// HalfDuplex runs the link on a line where only one end may transmit
	// at a time and each may hear its own bytes (RS-485 two-wire, radio
	// modems): the ends take turns (halfduplex.go). It applies to paced
	// lines (serial) only, and both ends need it.
	HalfDuplex bool
	// Logger receives the link's logs; nil means slog.Default().
	Logger *slog.Logger
}

// frameTimeTarget is how long one full data frame should occupy a slow
// line: long, so headers cost little (interactive data does not wait
// behind it: the link cuts it short, see Preempter).
const frameTimeTarget = 100 * time.Millisecond

// MinPayload is the least a link offers Upper.Fill, and the least payload
// size a peer may accept (its hello's max_payload): an upper layer's
// message of up to this length always fits a payload whole.
const MinPayload = 512

// Bounds on the payload of a data frame.
const (
	minPayload    = MinPayload
	minPacedFrame = 512      // on slow lines: headers stay under 4 %
	maxPayload    = 60 << 10 // a 32 KiB write and its headers fit one frame; FRAGMENT lengths are 16-bit
)

// DefaultConfig fills the zero fields of c from the transport's properties,
// and clamps MaxPayload into MinPayload..MaxPayloadLimit and Window into
// MinWindow..MaxWindow (Config.Verify reports such a value instead).
func DefaultConfig(c Config, p Properties) Config {
	if c.MaxPayload == 0 {
		c.MaxPayload = maxPayload
		if p.LineRate > 0 {
			c.MaxPayload = max(minPacedFrame, int(time.Duration(p.LineRate)*frameTimeTarget/time.Second)-frameOverhead-4)
		}
	}
	c.MaxPayload = max(minPayload, min(maxPayload, c.MaxPayload))
	if c.Window == 0 {
		c.Window = 128
		if p.LineRate > 0 {
			// Enough frames for a second of line time at the smallest
			// frame size, so a lost frame is repaired without the line
			// going idle even when a noisy line shrinks frames; the
			// bytes in flight are bounded apart (Link.inflightRoom).
			c.Window = max(16, p.LineRate/(minSizeCap+frameOverhead+2)+1)
		}
	}
	c.Window = max(2, min(c.Window, 4096))
	if c.KeepAlive == 0 {
		c.KeepAlive = 10 * time.Second
		if !p.Reliable {
			c.KeepAlive = time.Second
		}
	}
	if c.DeadTimeout == 0 {
		c.DeadTimeout = max(3*c.KeepAlive, 5*time.Second)
		if p.Reliable {
			c.DeadTimeout = max(3*c.KeepAlive, 30*time.Second)
		}
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// lineTime is how long n bytes occupy a line of rate bytes per second.
func lineTime(n, rate int) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second / time.Duration(rate)
}
