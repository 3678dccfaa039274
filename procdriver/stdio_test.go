package procdriver

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStdioOpensOnceAndEnds(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	d := NewStdioOn(inR, outW)
	assert.True(t, d.Properties().Reliable)
	tr, err := d.Open(context.Background())
	require.NoError(t, err)

	go func() { _, _ = inW.Write([]byte("from the peer")) }()
	buf := make([]byte, 64)
	n, err := tr.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "from the peer", string(buf[:n]))

	got := make(chan string, 1)
	go func() {
		b := make([]byte, 64)
		n, _ := outR.Read(b)
		got <- string(b[:n])
	}()
	n, err = tr.Write([]byte("to the peer"))
	require.NoError(t, err)
	assert.Equal(t, 11, n)
	assert.Equal(t, "to the peer", <-got)

	// Close fails a Read blocked on the input at once.
	readErr := make(chan error, 1)
	go func() {
		_, err := tr.Read(buf)
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-d.Done():
		t.Fatal("Done before the transport ended")
	default:
	}
	require.NoError(t, tr.Close())
	select {
	case err := <-readErr:
		assert.Error(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
	select {
	case <-d.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done not closed")
	}
	_, err = tr.Write([]byte("x"))
	assert.Error(t, err)
	_, err = d.Open(context.Background())
	assert.ErrorIs(t, err, ErrStdioEnded)
}

func TestStdioEndOfInput(t *testing.T) {
	inR, inW := io.Pipe()
	d := NewStdioOn(inR, io.Discard)
	tr, err := d.Open(context.Background())
	require.NoError(t, err)
	require.NoError(t, inW.Close())
	_, err = tr.Read(make([]byte, 8))
	assert.ErrorIs(t, err, io.EOF)
	// The link closes a transport that failed; that ends the driver.
	require.NoError(t, tr.Close())
	<-d.Done()
	_, err = d.Open(context.Background())
	assert.ErrorIs(t, err, ErrStdioEnded)
}
