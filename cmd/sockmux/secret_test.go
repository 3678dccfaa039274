package main

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unicode/utf16"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testKeyHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// A key copied from Windows arrives with the mode the copy gave it
// (0644): the error says how to make it private, with a path the shell
// takes as one word.
func TestSecretFileReadableByOthersSaysHowToFixIt(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no mode bits to check")
	}
	path := filepath.Join(t.TempDir(), "link key (from windows).key")
	require.NoError(t, os.WriteFile(path, []byte(testKeyHex+"\r\n"), 0o600))
	require.NoError(t, os.Chmod(path, 0o644))
	_, err := readSecret(path)
	require.Error(t, err)
	assert.Equal(t, "secret file "+path+" can be read by others (mode 0644); make it private with: chmod 600 '"+path+"'", err.Error())

	require.NoError(t, os.Chmod(path, 0o600))
	key, err := readSecret(path)
	require.NoError(t, err, "after the chmod the key is read")
	assert.Equal(t, testKeyHex, hex.EncodeToString(key))
}

// Keys saved by Windows tools: CRLF line ends, a UTF-8 byte order mark
// (Notepad's "UTF-8 with BOM"), UTF-16 (PowerShell 5's > and Out-File).
func TestSecretFileAsWindowsToolsWriteIt(t *testing.T) {
	utf16File := func(order binary.AppendByteOrder, bom []byte, text string) []byte {
		b := append([]byte{}, bom...)
		for _, u := range utf16.Encode([]rune(text)) {
			b = order.AppendUint16(b, u)
		}
		return b
	}
	text := "# sockmux shared secret; keep it private\r\n" + testKeyHex + "\r\n"
	for name, data := range map[string][]byte{
		"crlf":       []byte(text),
		"utf-8 bom":  append([]byte{0xEF, 0xBB, 0xBF}, text...),
		"utf-16le":   utf16File(binary.LittleEndian, []byte{0xFF, 0xFE}, text),
		"utf-16be":   utf16File(binary.BigEndian, []byte{0xFE, 0xFF}, text),
		"no newline": []byte(testKeyHex),
	} {
		path := filepath.Join(t.TempDir(), "k")
		require.NoError(t, os.WriteFile(path, data, 0o600))
		key, err := readSecret(path)
		if assert.NoError(t, err, name) {
			assert.Equal(t, testKeyHex, hex.EncodeToString(key), name)
		}
	}
}

func TestKeygenNoteOnWindows(t *testing.T) {
	assert.Empty(t, keygenNote("linux", "/etc/sockmux/link.key", "me"))
	assert.Equal(t, `the file has the permissions of its folder; to let only you read it: icacls C:\keys\link.key /inheritance:r /grant:r HOST\me:F`,
		keygenNote("windows", `C:\keys\link.key`, `HOST\me`))
	assert.Equal(t, `the file has the permissions of its folder; to let only you read it: icacls "C:\my keys\link.key" /inheritance:r /grant:r "%USERNAME%:F"`,
		keygenNote("windows", `C:\my keys\link.key`, "%USERNAME%"))
}
