package peers

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	keyA = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	keyB = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

func TestParseReadsNamesAndKeys(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.key"), []byte("# sockmux shared secret\n"+strings.Repeat("ab", 32)+"\n"), 0o600))
	b64 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	text := "# the fleet\n\ncabinet-17 " + keyA + "  # in the basement\r\nLab_2\t" + b64 + "\nboard-c @c.key\n"
	tab, err := Parse(text, "peers.txt", dir)
	require.NoError(t, err)
	require.Equal(t, 3, tab.Len())
	var names []string
	for _, p := range tab.Peers() {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{"cabinet-17", "Lab_2", "board-c"}, names, "file order, names as written")
	p, ok := tab.Lookup("CABINET-17")
	require.True(t, ok, "names match in any case")
	assert.Equal(t, 3, p.Line)
	assert.Equal(t, byte(0x00), p.Key[0])
	p, _ = tab.Lookup("lab_2")
	assert.Equal(t, []byte(strings.Repeat("k", 32)), p.Key)
	p, _ = tab.Lookup("board-c")
	assert.Equal(t, byte(0xab), p.Key[31], "@FILE is read relative to the peers file")
	_, ok = tab.Lookup("nobody")
	assert.False(t, ok)
}

func TestParseNamesTheLineAtFault(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"solo\n", `p line 1: peer "solo" has no key`},
		{"a " + keyA + " extra\n", `p line 1: unexpected "extra" after the key`},
		{"\n-a " + keyA, `p line 2: peer name "-a" starts with '-'`},
		{"a.b " + keyA, `p line 1: peer name "a.b" has '.'`},
		{strings.Repeat("n", 64) + " " + keyA, "longer than 63 characters"},
		{"a 1234", "p line 1: peer a: key does not hold a 32-byte key in hex or base64"},
		{"a " + keyA + "\nA " + keyB, "p line 2: peer A is listed already on line 1"},
		{"a " + keyA + "\nb " + keyA, "p line 2: peer b has the key of peer a (line 1); each peer needs a key of its own"},
		{"a @", "p line 1: peer a: key @ names no file"},
		{"a @missing.key", "p line 1: peer a: key from @missing.key: key file: stat"},
	} {
		_, err := Parse(tc.text, "p", t.TempDir())
		if assert.Error(t, err, tc.text) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
}

func TestLoadRefusesAFileOthersMayRead(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no mode bits")
	}
	path := filepath.Join(t.TempDir(), "peers")
	require.NoError(t, os.WriteFile(path, []byte("a "+keyA+"\n"), 0o600))
	tab, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, 1, tab.Len())
	assert.Equal(t, path, tab.Source())
	require.NoError(t, os.Chmod(path, 0o640))
	_, err = Load(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "peers file "+path+" can be read by others (mode 0640); make it private with: chmod 600 ")
}

func TestDiffSaysWhomToDisconnect(t *testing.T) {
	keyC := strings.Repeat("cd", 32)
	old, err := Parse("a "+keyA+"\nb "+keyB+"\nc "+keyC, "old", "")
	require.NoError(t, err)
	keyD := strings.Repeat("de", 32)
	cur, err := Parse("A "+keyA+"\nc "+keyD+"\nd "+keyB, "new", "")
	require.NoError(t, err)
	assert.Equal(t, Changes{Added: []string{"d"}, Removed: []string{"b"}, Rekeyed: []string{"c"}}, cur.Diff(old))
	assert.Equal(t, Changes{}, old.Diff(old))
}
