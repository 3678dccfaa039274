package control

import (
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// socketDir is the directory of control sockets on goos, given the
// environment (getenv), the temporary directory and the user's id. On
// POSIX systems it is $XDG_RUNTIME_DIR/sockmux when that is set, else
// /tmp/sockmux-UID; on Windows, where XDG_RUNTIME_DIR means nothing, it is
// sockmux in the temporary directory (%TMP% or %TEMP%), so that every
// shell of a user finds the same socket. SocketPath computes the real
// path with it and DefaultSocketHelp the text of help and man page, so
// the two cannot disagree.
func socketDir(goos string, getenv func(string) string, tempDir, uid string) string {
	if goos == "windows" {
		return joinFor(goos, tempDir, "sockmux")
	}
	if d := getenv("XDG_RUNTIME_DIR"); d != "" {
		return joinFor(goos, d, "sockmux")
	}
	return "/tmp/sockmux-" + uid
}

// joinFor joins path elements as goos does: with filepath.Join for the
// system we run on, else with that system's separator.
func joinFor(goos string, elem ...string) string {
	switch {
	case goos == runtime.GOOS:
		return filepath.Join(elem...)
	case goos == "windows":
		parts := make([]string, len(elem))
		for i, e := range elem {
			parts[i] = strings.TrimRight(e, `\/`)
		}
		parts[len(parts)-1] = elem[len(elem)-1]
		return strings.Join(parts, `\`)
	}
	return path.Join(elem...)
}

// envRef is how goos's shell refers to the environment variable name:
// %NAME% on Windows, $NAME elsewhere.
func envRef(goos, name string) string {
	if goos == "windows" {
		return "%" + name + "%"
	}
	return "$" + name
}

// DefaultSocketHelp says, for help text on goos, where the control socket
// of the link called NAME is when no --control names it, e.g.
// "$XDG_RUNTIME_DIR/sockmux/NAME.sock, or /tmp/sockmux-UID/NAME.sock when
// $XDG_RUNTIME_DIR is unset" on Linux and `%TEMP%\sockmux\NAME.sock` on
// Windows.
func DefaultSocketHelp(goos string) string {
	var consulted []string
	set := func(name string) string {
		consulted = append(consulted, envRef(goos, name))
		return envRef(goos, name)
	}
	unset := func(string) string { return "" }
	temp := envRef(goos, "TEMP")
	with := joinFor(goos, socketDir(goos, set, temp, "UID"), "NAME.sock")
	without := joinFor(goos, socketDir(goos, unset, temp, "UID"), "NAME.sock")
	if with == without {
		return with
	}
	return with + ", or " + without + " when " + strings.Join(consulted, " and ") + " is unset"
}

// realSocketDir is socketDir for this process.
func realSocketDir() string {
	return socketDir(runtime.GOOS, os.Getenv, os.TempDir(), strconv.Itoa(os.Getuid()))
}
