// Package procdriver runs a link over standard input and output, or over
// a command's: the link can then ride ssh, kubectl exec or a console
// server's session (DeleGate's proc@cmd).
package procdriver
