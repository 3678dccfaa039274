// Package memline is an in-memory null-modem cable for tests: two ends,
// each opened like a driver's transport, paced to a line rate, with byte faults injected on
// the way and cuts on demand. Every channel it uses belongs to the
// caller's goroutines, so it runs inside testing/synctest, where its
// pacing costs no real time.
package memline
