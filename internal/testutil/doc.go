// Package testutil holds the loopback servers and clients that the tests
// of several packages share. Only tests import it.
package testutil
