package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"runtime"
	"strings"
	"unicode/utf16"

	"github.com/urfave/cli/v2"

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

// readSecret loads a key written by keygen: 64 hex digits (or 32 bytes in
// base64), '#' comment lines ignored, in ASCII or UTF-8 (a byte order
// mark and CRLF line ends allowed) or UTF-16 with a byte order mark, as
// Windows tools write. A file others may read is refused.
func readSecret(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secret file %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secret file %s can be read by others (mode %04o); make it private with: chmod 600 %s", path, fi.Mode().Perm(), shellQuote(path))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	var text strings.Builder
	for _, line := range strings.Split(decodeText(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			text.WriteString(line)
		}
	}
	s := text.String()
	if key, err := hex.DecodeString(s); err == nil && len(key) == link.KeySize {
		return key, nil
	}
	if key, err := base64.StdEncoding.DecodeString(s); err == nil && len(key) == link.KeySize {
		return key, nil
	}
	return nil, fmt.Errorf("secret file %s does not hold a %d-byte key in hex or base64 (make one with: sockmux keygen FILE)", path, link.KeySize)
}

// decodeText is the text of a file as Windows tools may write it: UTF-8
// with or without a byte order mark, or UTF-16 (PowerShell 5's > and
// Out-File) with one.
func decodeText(b []byte) string {
	var order binary.ByteOrder
	switch {
	case bytes.HasPrefix(b, []byte{0xEF, 0xBB, 0xBF}):
		return string(b[3:])
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE}):
		order = binary.LittleEndian
	case bytes.HasPrefix(b, []byte{0xFE, 0xFF}):
		order = binary.BigEndian
	default:
		return string(b)
	}
	b = b[2:]
	units := make([]uint16, len(b)/2)
	for i := range units {
		units[i] = order.Uint16(b[2*i:])
	}
	return string(utf16.Decode(units))
}
