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
// A hub's -D proxy (AddDynamic) reaches a peer by host name: HOST.PEER.sockmux
// connects to HOST at peer PEER, which resolves HOST itself.
//
// Layers below are called down only: the hub uses endpoint, tcpdriver,
// link (ReadHello, Refusal, SetSecret), forward (the proxy) and peers.
package hub
