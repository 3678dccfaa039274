package keyfile

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseWordTakesHexAndBase64Only(t *testing.T) {
	raw := []byte(strings.Repeat("\x5a", Size))
	k, err := ParseWord(strings.Repeat("5a", Size))
	require.NoError(t, err)
	assert.Equal(t, raw, k)
	k, err = ParseWord(base64.StdEncoding.EncodeToString(raw))
	require.NoError(t, err)
	assert.Equal(t, raw, k)
	for _, w := range []string{"", "5a5a", strings.Repeat("5a", Size+1), strings.Repeat("zz", Size)} {
		_, err := ParseWord(w)
		assert.EqualError(t, err, "does not hold a 32-byte key in hex or base64", w)
	}
}

func TestReadNamesTheFileAndTheFix(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.key")
	require.NoError(t, os.WriteFile(bad, []byte("# comment only\n"), 0o600))
	_, err := Read("secret file", bad)
	assert.EqualError(t, err, "secret file "+bad+" does not hold a 32-byte key in hex or base64 (make one with: sockmux keygen FILE)")
	_, err = Read("secret file", dir)
	assert.EqualError(t, err, "secret file "+dir+" is not a regular file")
	_, err = Read("secret file", filepath.Join(dir, "none"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestShellQuote(t *testing.T) {
	assert.Equal(t, "/etc/k", shellQuote("/etc/k"))
	assert.Equal(t, `'it'\''s here'`, shellQuote("it's here"))
	assert.Equal(t, "''", shellQuote(""))
}
