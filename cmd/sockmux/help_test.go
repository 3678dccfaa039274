package main

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/control"
)

// renderHelp is sockmux's output for args as it would be on goos.
func renderHelp(t *testing.T, goos string, args ...string) string {
	t.Helper()
	old := helpGOOS
	helpGOOS = goos
	t.Cleanup(func() { helpGOOS = old })
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	require.NoError(t, app.Run(append([]string{"sockmux"}, args...)))
	return out.String()
}

// On Windows the help gives Windows' default control socket and writes
// every environment variable as %VAR%; elsewhere the POSIX ones and $VAR.
func TestHelpShowsThePlatformsDefaultsAndVariables(t *testing.T) {
	win := renderHelp(t, "windows", "link", "--help")
	assert.Contains(t, win, `(default: %TEMP%\sockmux\NAME.sock)`)
	assert.Contains(t, win, "[%SOCKMUX_PORT%]", "a spec flag (GenericFlag)")
	assert.Contains(t, win, "[%SOCKMUX_BAUD%]", "a flag urfave/cli reads from the environment")
	assert.Contains(t, win, "[%SOCKMUX_SECRET_FILE%]")
	assert.NotContains(t, win, "[$")
	assert.NotContains(t, win, "/tmp/")
	assert.NotContains(t, win, "XDG_RUNTIME_DIR")

	for _, goos := range []string{"linux", "darwin", "freebsd"} {
		posix := renderHelp(t, goos, "link", "--help")
		assert.Contains(t, posix, "(default: $XDG_RUNTIME_DIR/sockmux/NAME.sock, or /tmp/sockmux-UID/NAME.sock when $XDG_RUNTIME_DIR is unset)", goos)
		assert.Contains(t, posix, "[$SOCKMUX_PORT]", goos)
		assert.Contains(t, posix, "[$SOCKMUX_BAUD]", goos)
		assert.NotContains(t, posix, "%SOCKMUX", goos)
	}
}

// manPageFor is the man page as sockmux man prints it on goos.
func manPageFor(t *testing.T, goos string) string {
	t.Helper()
	old := helpGOOS
	helpGOOS = goos
	t.Cleanup(func() { helpGOOS = old })
	page, err := manPage()
	require.NoError(t, err)
	return page
}

// The man page names every flag's variable, the platform's way, with its
// brackets kept (Markdown took "[...] (...)" for a link and dropped them).
func TestManPageShowsThePlatformsDefaultsAndVariables(t *testing.T) {
	page := manPageFor(t, "linux")
	assert.Contains(t, page, "(both ends need auto) [$SOCKMUX_BAUD] (default: \"115200\")")
	assert.Contains(t, page, "[$SOCKMUX_PORT]")
	assert.Contains(t, page, "HOST|CIDR[:PORT[-PORT]] (repeatable; default: anywhere) [$SOCKMUX_ALLOW]")
	assert.Contains(t, page, "(default: $XDG_RUNTIME_DIR/sockmux/NAME.sock, or /tmp/sockmux-UID/NAME.sock when $XDG_RUNTIME_DIR is unset)")

	page = manPageFor(t, "windows")
	assert.Contains(t, page, "[%SOCKMUX_BAUD%] (default: \"115200\")")
	assert.Contains(t, page, `(default: %TEMP%\\sockmux\\NAME.sock)`, "roff escapes the backslashes")
	assert.NotContains(t, page, "[$")
}

// The help of the system the test runs on says what SocketPath does there.
func TestHelpOnThisSystem(t *testing.T) {
	help := renderHelp(t, runtime.GOOS, "link", "--help")
	assert.Contains(t, help, "(default: "+control.DefaultSocketHelp(runtime.GOOS)+")")
	assert.Contains(t, help, envHint(runtime.GOOS, []string{"SOCKMUX_PORT"}))
	assert.Contains(t, help, envHint(runtime.GOOS, []string{"SOCKMUX_BAUD"}))
}

func TestEnvHint(t *testing.T) {
	assert.Equal(t, "", envHint("linux", nil))
	assert.Equal(t, " [$A, $B]", envHint("linux", []string{"A", "B"}))
	assert.Equal(t, " [%A%, %B%]", envHint("windows", []string{"A", "B"}))
}
