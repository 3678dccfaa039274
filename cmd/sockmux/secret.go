package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/keyfile"
	"github.com/sockmux/sockmux/link"
)

// keygenCommand is "sockmux keygen FILE".
func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "write a new random shared secret for --secret-file",
		ArgsUsage: "FILE",
		Description: `Writes 32 random bytes, hex-encoded, to FILE with mode 0600. Give the same file
to both ends of a link with --secret-file (copy it over a channel you trust,
e.g. scp). To rotate a key, write a new one, copy it to both ends, and restart
them; see docs/security.md.

On Windows the mode does not apply: the file gets the permissions of its
folder, and keygen prints the icacls command that lets only you read it. A
key copied to a POSIX host needs chmod 600 there.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "overwrite FILE if it exists"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("keygen needs one argument, the file to write (e.g. sockmux keygen /etc/sockmux/link.key)")
			}
			path := c.Args().First()
			key := make([]byte, link.KeySize)
			if _, err := rand.Read(key); err != nil {
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if c.Bool("force") {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(path, flags, 0o600)
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s exists; use --force to replace it", path)
			}
			if err != nil {
				return err
			}
			if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
				f.Close()
				return err
			}
			if _, err := fmt.Fprintf(f, "# sockmux shared secret; keep it private\n%s\n", hex.EncodeToString(key)); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote a new key to %s; give both ends of the link the same file with --secret-file\n", path)
			if note := keygenNote(runtime.GOOS, path, currentUser()); note != "" {
				fmt.Fprintln(c.App.Writer, note)
			}
			return nil
		},
	}
}

// keygenNote is what keygen adds on goos after writing the key at path
// for the account named account: on Windows the mode it asks for does not make
// the file private (Go sets no ACL; the file takes its folder's), so it
// says how to.
func keygenNote(goos, path, account string) string {
	if goos != "windows" {
		return ""
	}
	return fmt.Sprintf("the file has the permissions of its folder; to let only you read it: icacls %s /inheritance:r /grant:r %s", windowsQuote(path), windowsQuote(account+":F"))
}

// currentUser is the user's account name as icacls takes it (DOMAIN\user
// on Windows), or %USERNAME% if it cannot be had.
func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "%USERNAME%"
}

// windowsQuote quotes a path for cmd and PowerShell when it needs it.
func windowsQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t&()[]{}^=;!'+,`~%$@#") {
		return s
	}
	return `"` + s + `"`
}

// readSecret loads a key written by keygen (package keyfile says which
// forms are read); a file others may read is refused.
func readSecret(path string) ([]byte, error) { return keyfile.Read("secret file", path) }
