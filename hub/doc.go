// Package hub is the composition root of a process that serves many peers
// at once (sockmux link --listen ADDR --peers FILE): one TCP listener, and
// one endpoint per peer of the peers file, each built by package endpoint
// as a plain end is, with its own driver (a tcpdriver.Feed), link, mux and
// forwarder; so each peer has its own session, resumption, key, limits,
// counters and forwards, and one peer's failure or flood touches no other.
//
// A connecting end gives its name in its first hello (link.Config.Name).
// The hub reads that hello (link.ReadHello) with the listener's pending
// connections bounded and timed out (tcpdriver.Acceptor), picks the peer
// by name and hands the connection, the hello given back, to that peer's
// endpoint, whose link requires the name (link.Config.PeerName) and the
// peer's key: the name is bound into the key proof. An unknown name is
// refused before any link sees it, with the reason sent to the connecting
// end (link.Refusal); a wrong key is refused by the peer's link.
//
// Reload takes a peers file read again (SIGHUP): a new peer gets its
// endpoint, a removed one is stopped (its streams reset, the peer told why)
// and a changed key applies to the peer's next handshake.
//
// A hub may also hold members it does not accept over a listener but runs
// over drivers of their own (Attach): the serial ports of sockmux link
// --comm A --comm B, whose far ends are plain ends that give no name. Each
// is a peer like the peers file's, with its own endpoint, session,
// forwards and counters, named by the caller (PortName derives a name
// from a path). A hub may have only such members: then it has no
// listener and no peers file. WatchGlob attaches a member for each path
// that matches a pattern, polling for new ones (adapters as they are
// plugged in); a path that vanishes keeps its member, whose driver waits
// for the device as for an unplugged one.
//
// A hub's -D proxy (AddDynamic) reaches a peer by host name: HOST.PEER.sockmux
// connects to HOST at peer PEER, which resolves HOST itself.
//
// Layers below are called down only: the hub uses endpoint, tcpdriver,
// link (ReadHello, Refusal, SetSecret, CheckName), forward (the proxy)
// and peers; an attached member's driver is the caller's.
package hub
