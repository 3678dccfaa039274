// Command sockmux carries many TCP connections, both ways, over one
// persistent byte channel: a serial cable, a pair of named pipes, or a TCP
// connection. See docs/guide.md.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "sockmux: "+err.Error())
		os.Exit(1)
	}
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
