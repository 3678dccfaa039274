// Package tcpdriver carries a sockmux link over TCP: a Connector dials the
// far end (again each time the connection breaks), a Receptor listens for
// it (--connect and --listen).
//
// Like the other drivers (pipe, serialport, procdriver) it only opens the
// byte channel and reports its properties: framing, retransmission, the
// handshake, authentication and session resumption all belong to package
// link. TCP is reliable while it is up, so the link skips timeout
// retransmission over it.
//
// A Receptor hands the link only connections that speak first (a sockmux
// connector sends at once; a port scanner that says nothing is dropped
// after five seconds), and holds off for a while a source whose peer
// failed authentication (link.Penalizer).
//
// For a hub, ListenMany makes an Acceptor, which takes many connectors at
// once: it bounds and times out the connections it has not yet handed
// over, and a handler hands each to the Feed (the driver) of the peer it
// belongs to.
package tcpdriver
