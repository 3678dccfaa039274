package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

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
them; see docs/security.md.`,
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
			return nil
		},
	}
}

// readSecret loads a key written by keygen: 64 hex digits (or 32 bytes in
// base64), '#' comment lines ignored. A file others may read is refused.
func readSecret(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secret file %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secret file %s can be read by others (mode %04o); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	var text strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
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
