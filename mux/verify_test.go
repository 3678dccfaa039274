package mux

import (
	"testing"

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
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" when valid
	}{
		{"StreamWindow at InitialWindow", Config{StreamWindow: InitialWindow}, ""},
		{"StreamWindow at the limit", Config{StreamWindow: MaxStreamWindow}, ""},
		{"StreamWindow below InitialWindow", Config{StreamWindow: InitialWindow - 1}, "mux: StreamWindow 65535: want 65536 (InitialWindow) to 1073741824 bytes"},
		{"StreamWindow above the limit", Config{StreamWindow: MaxStreamWindow + 1}, "mux: StreamWindow 1073741825:"},
		{"StreamWindow negative", Config{StreamWindow: -1}, "mux: StreamWindow -1:"},
		{"MaxStreams 1", Config{MaxStreams: 1}, ""},
		{"MaxStreams at the limit", Config{MaxStreams: MaxStreamsLimit}, ""},
		{"MaxStreams above the limit", Config{MaxStreams: MaxStreamsLimit + 1}, "mux: MaxStreams 1048577: want 1 to 1048576"},
		{"MaxStreams negative", Config{MaxStreams: -1}, "mux: MaxStreams -1:"},
		{"MaxBuffered one window", Config{MaxBuffered: InitialWindow}, ""},
		{"MaxBuffered below one window", Config{MaxBuffered: InitialWindow - 1}, "mux: MaxBuffered 65535: want at least 65536"},
		{"AcceptBacklog above MaxStreams (capped, as documented)", Config{MaxStreams: 10, AcceptBacklog: 100}, ""},
		{"AcceptBacklog negative", Config{AcceptBacklog: -1}, "mux: AcceptBacklog -1: must not be negative"},
		{"MaxListens negative", Config{MaxListens: -1}, "mux: MaxListens -1: must not be negative"},
		{"MaxReplyQueue one message", Config{MaxReplyQueue: maxControl}, ""},
		{"MaxReplyQueue below one message", Config{MaxReplyQueue: maxControl - 1}, "mux: MaxReplyQueue 479: want at least 480 bytes"},
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

// Verify's error names the field at fault, for a program to name its own
// setting.
func TestVerifyNamesTheField(t *testing.T) {
	var ce *ConfigError
	require.ErrorAs(t, Config{MaxStreams: -1}.Verify(), &ce)
	assert.Equal(t, []string{"MaxStreams"}, ce.Fields)
	require.ErrorAs(t, Config{MaxReplyQueue: 1}.Verify(), &ce)
	assert.Equal(t, []string{"MaxReplyQueue"}, ce.Fields)
}
