package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Shell completion: the scripts ask sockmux itself for candidates
// (urfave/cli's --generate-bash-completion), so they follow the commands
// and flags of the binary that is installed; fish gets a static script
// generated from the same definitions.

var completionShells = []string{"bash", "zsh", "fish"}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: `Prints a script that completes sockmux's commands and flags in the shell.

  bash:  source <(sockmux completion bash)          # in ~/.bashrc, or save it as
         ~/.local/share/bash-completion/completions/sockmux
  zsh:   source <(sockmux completion zsh)           # in ~/.zshrc, after compinit; or save it
         as _sockmux in a directory of $fpath
  fish:  sockmux completion fish > ~/.config/fish/completions/sockmux.fish`,
		BashComplete: func(c *cli.Context) {
			if c.NArg() == 0 || c.NArg() == 1 && c.Args().First() == "" {
				for _, s := range completionShells {
					fmt.Fprintln(c.App.Writer, s)
				}
			}
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("completion needs one shell: %s", strings.Join(completionShells, ", "))
			}
			return writeCompletion(os.Stdout, c.App, c.Args().First())
		},
	}
}

// writeCompletion writes shell's completion script for app.
func writeCompletion(w io.Writer, app *cli.App, shell string) error {
	var script string
	switch shell {
	case "bash":
		script = bashCompletion
	case "zsh":
		script = zshCompletion
	case "fish":
		s, err := app.ToFishCompletion()
		if err != nil {
			return fmt.Errorf("completion fish: %w", err)
		}
		script = s
	default:
		return fmt.Errorf("completion %q: want %s", shell, strings.Join(completionShells, ", "))
	}
	_, err := io.WriteString(w, script)
	return err
}

// manCommand prints the manual page made from the command definitions.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:  "man",
		Usage: "print sockmux's manual page (roff), made from its commands and flags",
		Description: `Prints the manual page, section 1, in roff: read it with
  sockmux man | man -l -
or install it with
  sockmux man > /usr/local/share/man/man1/sockmux.1
("make man" writes docs/sockmux.1).`,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q", c.Args().First())
			}
			page, err := manPage()
			if err != nil {
				return err
			}
			_, err = io.WriteString(os.Stdout, page)
			return err
		},
	}
}

// manPage is sockmux's manual page in roff, section 1, for helpGOOS.
func manPage() (string, error) {
	// A fresh app: the one running has grown a help subcommand under
	// "man", which the page would list.
	app := newApp()
	app.Setup()
	manUsage(app.Commands)
	page, err := app.ToManWithSection(1)
	if err != nil {
		return "", fmt.Errorf("man: %w", err)
	}
	return page, nil
}

// takesPath reports whether a flag's usage names its value `PATH` or `FILE`.
func takesPath(usage string) bool {
	return strings.Contains(usage, "`PATH`") || strings.Contains(usage, "`FILE`")
}

// completeLeaves gives every command without subcommands a completion
// that offers its flags when the word begun is a flag, and nothing
// otherwise, so that the shell completes file names (a --comm PATH, a
// key file) instead of being offered a "help" subcommand. Flags whose
// value is a `PATH` or a `FILE` are marked as taking files, for fish.
func completeLeaves(cmds []*cli.Command) {
	for _, cmd := range cmds {
		if len(cmd.Subcommands) > 0 {
			completeLeaves(cmd.Subcommands)
			continue
		}
		for _, f := range cmd.Flags {
			// Flags whose value is a path complete file names in fish.
			switch sf := f.(type) {
			case *cli.StringFlag:
				sf.TakesFile = takesPath(sf.Usage)
			case *cli.GenericFlag: // --comm, repeatable
				sf.TakesFile = takesPath(sf.Usage)
			}
		}
		if cmd.BashComplete != nil {
			continue
		}
		flags := cmd.Flags
		cmd.BashComplete = func(c *cli.Context) {
			// The scripts call "sockmux WORDS... CURRENT --generate-bash-completion"
			// with CURRENT empty unless it begins with "-".
			last := ""
			if n := len(os.Args); n > 2 {
				last = os.Args[n-2]
			}
			if !strings.HasPrefix(last, "-") {
				return
			}
			prefix := strings.TrimLeft(last, "-")
			for _, f := range flags {
				if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
					continue
				}
				for _, name := range f.Names() {
					dash := "--"
					if len(name) == 1 {
						dash = "-"
					}
					if strings.HasPrefix(name, prefix) && strings.HasPrefix(dash+name, last) {
						fmt.Fprintln(c.App.Writer, dash+name)
					}
				}
			}
		}
	}
}

// bashCompletion asks sockmux for candidates; with none, bash completes
// file names.
const bashCompletion = `# bash completion for sockmux
#   source <(sockmux completion bash)
# or save as ~/.local/share/bash-completion/completions/sockmux

_sockmux_complete() {
    local cur="${COMP_WORDS[COMP_CWORD]}"
    local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
    local opts
    if [[ "$cur" == -* ]]; then
        opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
    else
        opts=$("${words[@]}" "" --generate-bash-completion 2>/dev/null)
    fi
    COMPREPLY=()
    local IFS=$'\n'
    if [[ -n "$opts" ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    fi
}

complete -o bashdefault -o default -F _sockmux_complete sockmux
`

// zshCompletion asks sockmux for candidates; with none, zsh completes
// file names.
const zshCompletion = `#compdef sockmux
# zsh completion for sockmux
#   source <(sockmux completion zsh)      (after compinit)
# or save as _sockmux in a directory of $fpath

_sockmux() {
  local -a opts
  local cur=${words[CURRENT]}
  local -a before
  before=("${(@)words[1,CURRENT-1]}")
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$("${(@)before}" "$cur" --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$("${(@)before}" "" --generate-bash-completion 2>/dev/null)}")
  fi
  opts=("${(@)opts:#}")
  if (( ${#opts} )); then
    _describe 'sockmux' opts
  else
    _files
  fi
}

if [[ "${zsh_eval_context[-1]}" == loadautofunc ]]; then
  _sockmux "$@"
else
  compdef _sockmux sockmux
fi
`
