// Package autobaud finds the fastest speed a serial line carries (sockmux
// link --baud auto): both ends start at a common rate, and once the link
// is up there they step up through the standard rates both ports accept,
// verifying each with a test pattern both ways, keeping it or falling back
// to the last good one; while linked they step down when the line's frame
// error rate climbs, and try higher rates again later with a growing
// backoff.
//
// It sits above the link and the mux and drives the serial driver: a
// Controller talks to its peer over one mux stream of the service named
// Service (the negotiation, docs/protocol.md), switches its port's speed
// with Port.SetSpeed (tcsetattr under the open transport: no reopen) and
// tells the link the new line rate (Line.SetLineRate), whose ARQ repairs
// what the switch garbled, so streams carry on with nothing lost.
//
// Every switch is bounded by deadlines, so that both ends fall back even
// when a message is lost: an end that switched and sees no verified
// traffic at the new rate within Config.VerifyTimeout goes back to the
// old rate, and an end that hears nothing at all for Config.Silence
// returns to the start rate, where the other end, hearing nothing either,
// meets it.
package autobaud
