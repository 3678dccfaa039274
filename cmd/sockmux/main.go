// Command sockmux carries many TCP connections, both ways, over one
// persistent byte channel: a serial cable, a pair of named pipes, or a TCP
// connection. See docs/guide.md.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/sockmux/sockmux/serialport"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if serialLink(os.Args[1:], os.LookupEnv) {
		runtime.GOMAXPROCS(1)
	}
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "sockmux: "+err.Error())
		os.Exit(1)
	}
}

// serialLink reports whether args (os.Args after the program name) run a
// link over a serial port and the user left GOMAXPROCS alone. Such a
// process moves a few kilobytes a second: on one P its goroutines hand
// work to each other without waking a second thread, which halves its
// wake-ups (issue 20, docs/serial.md). The serial port is the one --comm
// names (or SOCKMUX_COMM); a port named only in a --config file is not
// seen here, and that link keeps the default.
func serialLink(args []string, env func(string) (string, bool)) bool {
	if _, set := env("GOMAXPROCS"); set || len(args) == 0 || args[0] != "link" {
		return false
	}
	comm, _ := env("SOCKMUX_COMM")
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		switch {
		case a == "--comm" || a == "-comm":
			if i+1 < len(args) {
				comm = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--comm="), strings.HasPrefix(a, "-comm="):
			_, comm, _ = strings.Cut(a, "=")
		}
	}
	return comm != "" && serialport.IsSerial(comm)
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "sockmux",
		Usage:   "carry many TCP connections over one serial cable, pipe or TCP link",
		Version: version,
		Description: `sockmux joins two hosts (or two programs on one host) over one persistent byte
channel and carries many TCP connections across it, in both directions, with
framing that survives noise and a link that survives unplugging.

  host A: sockmux link --comm /dev/ttyUSB0 -L 2222:127.0.0.1:22
  host B: sockmux link --comm /dev/ttyUSB0
  then:   ssh -p 2222 localhost        # reaches B's sshd over the cable`,
		HideHelpCommand:      true,
		EnableBashCompletion: true, // --generate-bash-completion, for sockmux completion's scripts
		Commands: []*cli.Command{
			linkCommand(),
			statusCommand(),
			testLinkCommand(),
			delegateCommand(),
			cableCommand(),
			portsCommand(),
			keygenCommand(),
			completionCommand(),
			manCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main prints errors
	}
	completeLeaves(app.Commands)
	return app
}

// newLogger makes the structured logger every command logs to (stderr).
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
