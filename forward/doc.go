// Package forward carries TCP connections over a mux: it listens on local
// ports and opens a stream for each connection (ssh's -L, -D and
// DeleGate's PORT=), listens on behalf of the far end (-R), and decides
// where each stream that arrives from the far end goes.
package forward
