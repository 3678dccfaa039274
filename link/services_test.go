package link

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHelloServicesRoundTrip(t *testing.T) {
	ext := appendHelloExt(nil, []string{"test-link", "shell"}, "", 0)
	assert.Equal(t, []string{"test-link", "shell"}, helloServices(ext))
	assert.Nil(t, helloServices(appendHelloExt(nil, nil, "", 0)))

	// An unknown extension before it is skipped.
	other := append([]byte{0x7f, 3, 'a', 'b', 'c'}, ext...)
	assert.Equal(t, []string{"test-link", "shell"}, helloServices(other))

	// Malformed: a length beyond the body, a truncated uvarint.
	assert.Nil(t, helloServices([]byte{extServices, 200, 'x'}))
	assert.Nil(t, helloServices([]byte{extServices, 0x80}))
	assert.Nil(t, helloServices([]byte{extServices}))
}

func TestHelloCarriesServices(t *testing.T) {
	h := hello{Version: ProtocolVersion, Session: 7, MaxPayload: MinPayload, Ext: appendHelloExt(nil, []string{"test-link"}, "", 0)}
	got, err := parseHello(h.marshal(nil))
	assert.NoError(t, err)
	assert.Equal(t, []string{"test-link"}, helloServices(got.Ext))
}

func TestCheckServices(t *testing.T) {
	assert.NoError(t, checkServices(nil))
	assert.NoError(t, checkServices([]string{"test-link"}))
	for _, bad := range []string{"", "a,b", "with space", "tab\t", "é"} {
		assert.Error(t, checkServices([]string{bad}), "%q", bad)
	}
	long := make([]string, 100)
	for i := range long {
		long[i] = "service"
	}
	assert.ErrorContains(t, checkServices(long), "at most 512")
}
