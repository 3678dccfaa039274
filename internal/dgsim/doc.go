// Package dgsim is a simulated DeleGate 9.x SockMux end for tests, written
// from the facts of issue 18 and the capture of two real DeleGates
// (docs/delegate.md): the HELLO exchange as captured, SETOPT PACKSIZE and
// CONNDATA, CONNECT with the client's first bytes, routing by the port a
// connection entered on, SEND/SENT flow control (no reading beyond
// 4 PACKSIZE unacknowledged), and CLOSE/CLOSED as a full close.
package dgsim
