//go:build !unix && !windows

package pipe

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
)

// driverSys is empty where pipes are not supported.
type driverSys struct{}

var errUnsupported = errors.New("pipe: named pipes are not supported on " + runtime.GOOS)

// NewPair is not supported on this system; it returns an error.
func NewPair(in, out string, log *slog.Logger) (*Driver, error) { return nil, errUnsupported }

// NewComm is not supported on this system; it returns an error.
func NewComm(path string, log *slog.Logger) (*Driver, error) { return nil, errUnsupported }

func (d *Driver) open(ctx context.Context) (io.ReadWriteCloser, error) { return nil, errUnsupported }

func (d *Driver) closeSys() error { return nil }
