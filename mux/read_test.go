package mux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Read copies outside m.mu while Deliver keeps appending (and moving the
// unread bytes when the buffer fills): small reads of odd sizes still get
// every byte once, in order.
func TestReadWhileDelivering(t *testing.T) {
	a, b, _ := newPair(t, 1500, Config{})
	data := make([]byte, 3<<20)
	r := rand.New(rand.NewPCG(9, 9))
	for i := range data {
		data[i] = byte(r.UintN(256))
	}
	go func() {
		s, err := a.Open(context.Background(), Info{})
		if err != nil {
			return
		}
		_, _ = s.Write(data)
		_ = s.CloseWrite()
	}()
	s, err := b.AcceptStream(ctx(t))
	require.NoError(t, err)
	s.Accept()
	var got bytes.Buffer
	buf := make([]byte, 7000)
	for {
		n, err := s.Read(buf[:1+r.IntN(len(buf))])
		got.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
	}
	assert.True(t, bytes.Equal(data, got.Bytes()), "got %d bytes, want %d, the same", got.Len(), len(data))
}

// Concurrent Reads of one stream never hand out the same bytes twice.
func TestConcurrentReadsOfOneStream(t *testing.T) {
	a, b, _ := newPair(t, 1500, Config{})
	const size = 2 << 20
	go func() {
		s, err := a.Open(context.Background(), Info{})
		if err != nil {
			return
		}
		_, _ = s.Write(make([]byte, size))
		_ = s.CloseWrite()
	}()
	s, err := b.AcceptStream(ctx(t))
	require.NoError(t, err)
	s.Accept()
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1000+1000*i)
			for {
				n, err := s.Read(buf)
				mu.Lock()
				total += n
				mu.Unlock()
				if err != nil {
					assert.ErrorIs(t, err, io.EOF)
					return
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, size, total)
}

// Concurrent Writes to one stream each arrive whole, none lost or mixed
// into another.
func TestConcurrentWritesToOneStream(t *testing.T) {
	a, b, _ := newPair(t, 1500, Config{})
	const each, writers = 256 << 10, 4
	s, err := a.Open(ctx(t), Info{})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.Write(bytes.Repeat([]byte{byte('a' + i)}, each))
			assert.NoError(t, err)
			assert.Equal(t, each, n)
		}()
	}
	go func() { wg.Wait(); _ = s.CloseWrite() }()
	r, err := b.AcceptStream(ctx(t))
	require.NoError(t, err)
	r.Accept()
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Len(t, got, each*writers)
	for k := 0; k < len(got); k += each {
		assert.Equal(t, bytes.Repeat(got[k:k+1], each), got[k:k+each], "write %d arrived whole", k/each)
	}
}
