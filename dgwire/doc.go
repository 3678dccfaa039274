// Package dgwire speaks DeleGate 9.x's SockMux wire (protocol version 0.3)
// in the link's place under the mux, so that one end of an existing
// DeleGate pair can be replaced by sockmux (issue 18, docs/delegate.md).
//
// A Link turns the mux's messages into SockMux packets and back: a stream
// is an agent, OPEN is CONNECT (with CONNDATA, the client's first bytes),
// ACCEPT is CONNECTED, DATA is SEND acknowledged by SENT (a sender stops at
// about four PACKSIZEs unacknowledged), FIN and RESET are CLOSE, which
// DeleGate has only in full. The start-up is HELLO/HELLOOK and SETOPT as
// captured from two real DeleGates (../shared/reference). The wire has no
// checksums, sequence numbers, resumption or authentication: what the line
// damages is delivered damaged, as DeleGate delivers it, and a transport
// that drops ends the tunnel's connections. Limits bound what a hostile or
// broken peer can make this end hold (packets over PACKSIZE, unknown
// types, too many agents, answers it does not read).
package dgwire
