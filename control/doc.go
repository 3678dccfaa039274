// Package control serves a running link's live status over a local
// control socket, and as Prometheus text exposition. It reads the link and
// the multiplexer; the command line wires it (cmd → control → mux, link).
package control
