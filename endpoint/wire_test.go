package endpoint

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/dgwire"
	"github.com/sockmux/sockmux/link"
)

type lineDriver struct{ reliable bool }

func (d lineDriver) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (d lineDriver) Properties() link.Properties {
	return link.Properties{Reliable: d.reliable, LineRate: 11520}
}
func (d lineDriver) String() string { return "test line" }

func TestNewDeleGate(t *testing.T) {
	_, err := NewDeleGate(Options{Driver: lineDriver{true}, Link: link.Config{Secret: make([]byte, 32)}}, dgwire.Config{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--secret-file")

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	e, err := NewDeleGate(Options{Driver: lineDriver{false}, Logger: log}, dgwire.Config{})
	require.NoError(t, err)
	assert.Nil(t, e.Link)
	assert.NotNil(t, e.DeleGate)
	assert.Contains(t, logs.String(), "none of sockmux's integrity checks, resumption or authentication")
	assert.Contains(t, logs.String(), "noise reaches the connections")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	cancel()
	assert.NoError(t, <-done)
}
