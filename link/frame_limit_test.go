package link

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A frame longer than the largest the reader accepts is dropped even when
// its CRC is good and its delimiter arrives in the same read: the limit
// must not depend on how the transport cut the bytes.
func TestFrameReaderDropsOverlongFrameInOneRead(t *testing.T) {
	const maxFrame = 100
	long := encodeFrame(nil, append([]byte{frameData, 0, 0, 0, 0}, bytes.Repeat([]byte{1}, maxFrame)...))
	ok := encodeFrame(nil, []byte{frameData, 0, 1, 0, 0, 'x'})
	for chunk, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r }, // all in one read
		iotest.OneByteReader,
	} {
		var errs []error
		r := wrap(bytes.NewReader(append(append([]byte(nil), long...), ok...)))
		fr := newFrameReader(r, maxFrame, func(err error) { errs = append(errs, err) }, func(int) {})
		body, err := fr.next()
		require.NoError(t, err, "chunk %d", chunk)
		assert.Equal(t, []byte{frameData, 0, 1, 0, 0, 'x'}, body, "chunk %d", chunk)
		_, err = fr.next()
		assert.True(t, errors.Is(err, io.EOF))
		if assert.Len(t, errs, 1, "chunk %d", chunk) {
			assert.ErrorIs(t, errs[0], errTooLong)
		}
	}
}
