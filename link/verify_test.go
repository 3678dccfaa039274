package link

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The zero Config is valid: every zero field means its default.
func TestVerifyZeroConfig(t *testing.T) {
	require.NoError(t, Config{}.Verify())
}

// Each rule of Verify: a value just inside passes, one just outside fails
// with an error naming the field.
func TestVerifyRules(t *testing.T) {
	key := make([]byte, KeySize)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" when valid
	}{
		{"MaxPayload at MinPayload", Config{MaxPayload: MinPayload}, ""},
		{"MaxPayload at the limit", Config{MaxPayload: 61440}, ""},
		{"MaxPayload below MinPayload", Config{MaxPayload: MinPayload - 1}, "link: MaxPayload 511: want 512 to 61440 bytes"},
		{"MaxPayload above the limit", Config{MaxPayload: 61441}, "link: MaxPayload 61441: want 512 to 61440 bytes"},
		{"MaxPayload negative", Config{MaxPayload: -1}, "link: MaxPayload -1:"},
		{"Window at the bounds", Config{Window: MinWindow}, ""},
		{"Window at the top", Config{Window: MaxWindow}, ""},
		{"Window 1", Config{Window: 1}, "link: Window 1: want 2 to 4096 frames"},
		{"Window too large", Config{Window: 4097}, "link: Window 4097:"},
		{"Secret of KeySize", Config{Secret: key}, ""},
		{"Secret too short", Config{Secret: key[:16]}, "link: Secret of 16 bytes: want 32"},
		{"KeepAlive negative", Config{KeepAlive: -time.Second}, "link: KeepAlive -1s: must not be negative"},
		{"DeadTimeout negative", Config{DeadTimeout: -time.Second}, "link: DeadTimeout -1s: must not be negative"},
		{"HandshakeTimeout negative", Config{HandshakeTimeout: -1}, "link: HandshakeTimeout -1ns: must not be negative"},
		{"ResumeTimeout negative", Config{ResumeTimeout: -time.Minute}, "link: ResumeTimeout -1m0s: must not be negative"},
		{"DeadTimeout longer than KeepAlive", Config{KeepAlive: time.Second, DeadTimeout: 3 * time.Second}, ""},
		{"DeadTimeout not longer than KeepAlive", Config{KeepAlive: 5 * time.Second, DeadTimeout: 5 * time.Second}, "link: DeadTimeout 5s is not longer than KeepAlive 5s"},
		{"AEADs known", Config{AEADs: []AEAD{AESGCM, ChaCha20Poly1305}}, ""},
		{"AEAD unknown", Config{AEADs: []AEAD{9}}, "unknown AEAD 9"},
		{"AEAD twice", Config{AEADs: []AEAD{AESGCM, AESGCM}}, "listed twice"},
		{"Compress known", Config{Compress: CompressBest}, ""},
		{"Compress unknown", Config{Compress: Compression(7)}, "link: Compress 7:"},
		{"Services", Config{Services: []string{"test-link", "shell"}}, ""},
		{"Service with a comma", Config{Services: []string{"a,b"}}, `link: service name "a,b"`},
		{"Service empty", Config{Services: []string{""}}, `link: service name ""`},
		{"Service with a space", Config{Services: []string{"a b"}}, `link: service name "a b"`},
		{"Services too long", Config{Services: []string{strings.Repeat("s", 600)}}, "link: the service names take 601 bytes, at most 512"},
	} {
		err := tc.cfg.Verify()
		if tc.want == "" {
			assert.NoError(t, err, tc.name)
			continue
		}
		if assert.Error(t, err, tc.name) {
			assert.Contains(t, err.Error(), tc.want, tc.name)
		}
	}
}

// What DefaultConfig makes of any transport passes Verify.
func TestDefaultConfigVerifies(t *testing.T) {
	for _, p := range []Properties{{}, {Reliable: true}, {LineRate: 960}, {LineRate: 11520}, {LineRate: 1 << 20}} {
		c := DefaultConfig(Config{}, p)
		assert.NoError(t, c.Verify(), "%+v", p)
	}
}

// Verify's error names the fields at fault, for a program to name its own
// settings.
func TestVerifyNamesTheFields(t *testing.T) {
	var ce *ConfigError
	require.ErrorAs(t, Config{MaxPayload: 1}.Verify(), &ce)
	assert.Equal(t, []string{"MaxPayload"}, ce.Fields)
	require.ErrorAs(t, Config{KeepAlive: 10 * time.Second, DeadTimeout: 5 * time.Second}.Verify(), &ce)
	assert.Equal(t, []string{"DeadTimeout", "KeepAlive"}, ce.Fields)
	require.ErrorAs(t, Config{Services: []string{"a b"}}.Verify(), &ce)
	assert.Equal(t, []string{"Services"}, ce.Fields)
	require.ErrorAs(t, Config{AEADs: []AEAD{0}}.Verify(), &ce)
	assert.Equal(t, []string{"AEADs"}, ce.Fields)
}
