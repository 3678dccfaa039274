package keyfile

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"unicode/utf16"
)

// Size is the length of a key.
const Size = 32

// Read loads the key in the file at path; what names the file in errors
// ("secret file", "peers file"). A file that is not regular, or that
// others may read (POSIX), is refused with the command that fixes it.
func Read(what, path string) ([]byte, error) {
	b, err := ReadPrivate(what, path)
	if err != nil {
		return nil, err
	}
	key, err := Parse(Text(b))
	if err != nil {
		return nil, fmt.Errorf("%s %s %w (make one with: sockmux keygen FILE)", what, path, err)
	}
	return key, nil
}

// ReadPrivate returns the bytes of the file at path if it is a regular
// file that only its owner may read (on POSIX systems; Windows has no mode
// bits to check). what names the file in errors.
func ReadPrivate(what, path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if err := private(what, path, fi.Mode()); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

func private(what, path string, mode fs.FileMode) error {
	if runtime.GOOS == "windows" || mode.Perm()&0o077 == 0 {
		return nil
	}
	return fmt.Errorf("%s %s can be read by others (mode %04o); make it private with: chmod 600 %s", what, path, mode.Perm(), shellQuote(path))
}

// Parse returns the key in text: its lines other than blank ones and '#'
// comments, joined, as hex or base64.
func Parse(text string) ([]byte, error) {
	var s strings.Builder
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			s.WriteString(line)
		}
	}
	return ParseWord(s.String())
}

// ParseWord returns the key written as one word: 64 hex digits or 32
// bytes in base64.
func ParseWord(w string) ([]byte, error) {
	if key, err := hex.DecodeString(w); err == nil && len(key) == Size {
		return key, nil
	}
	if key, err := base64.StdEncoding.DecodeString(w); err == nil && len(key) == Size {
		return key, nil
	}
	return nil, fmt.Errorf("does not hold a %d-byte key in hex or base64", Size)
}

// Text is the text of a file as Windows tools may write it: UTF-8 with or
// without a byte order mark, or UTF-16 (PowerShell 5's > and Out-File)
// with one. CRLF line ends are left for the caller to trim.
func Text(b []byte) string {
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

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
