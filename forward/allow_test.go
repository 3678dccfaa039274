package forward

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAllowPolicy(t *testing.T) {
	p, err := ParseAllow([]string{"10.0.0.0/8", "127.0.0.1:22", "[::1]:80-443", "localhost:5432", "*.example.org:443"})
	require.NoError(t, err)
	ctx := context.Background()
	for _, tc := range []struct {
		dest string
		ok   bool
	}{
		{"10.1.2.3:80", true},
		{"11.1.2.3:80", false},
		{"127.0.0.1:22", true},
		{"127.0.0.1:23", false},
		{"[::1]:443", true},
		{"[::1]:444", false},
		{"[::ffff:10.0.0.1]:9", true},
		{"localhost:5432", true},
		{"localhost:5433", false},
	} {
		got, err := p.Resolve(ctx, tc.dest)
		if tc.ok {
			assert.NoError(t, err, tc.dest)
			assert.NotEmpty(t, got)
		} else {
			var de *DeniedError
			assert.ErrorAs(t, err, &de, tc.dest)
			assert.Contains(t, err.Error(), "not allowed", tc.dest)
		}
	}
	assert.True(t, matchHost("*.example.org", "www.example.org"))
	assert.False(t, matchHost("*.example.org", "example.org"))
	assert.False(t, matchHost("*.example.org", "evilexample.org"))

	empty, err := ParseAllow(nil)
	require.NoError(t, err)
	got, err := empty.Resolve(ctx, "anything.invalid:1")
	require.NoError(t, err)
	assert.Equal(t, "anything.invalid:1", got)

	for _, bad := range []string{"", "10.0.0.0/8:0", "host:1-x", "[::1", "[::1]x", "a b", "h:9-1"} {
		_, err := ParseAllow([]string{bad})
		assert.Error(t, err, bad)
	}
}
