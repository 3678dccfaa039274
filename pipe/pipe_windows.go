//go:build windows

package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/windows"
)

// direction is how this side uses a named pipe.
type direction int

const (
	dirRead direction = iota + 1
	dirWrite
	dirDuplex
)

// endpoint is one named pipe the driver opens.
type endpoint struct {
	role string // "commin", "commout" or "comm", for messages
	path string
	dir  direction
}

// driverSys is the Windows part of a Driver.
type driverSys struct {
	ends []endpoint // in, out for a pair; the duplex pipe for comm
}

const (
	pipePrefix  = `\\.\pipe\`
	maxPipeName = 256 // the whole name, per CreateNamedPipe
	pipeBuffer  = 64 << 10
)

// NewPair returns a driver that reads from the named pipe in and writes to
// the named pipe out, both of the form \\.\pipe\NAME: DeleGate's commin@IN
// and commout@OUT. Whichever side comes first creates each pipe (inbound or
// outbound); the other connects to it. Bad names are reported at once.
func NewPair(in, out string, log *slog.Logger) (*Driver, error) {
	if in == "" || out == "" {
		return nil, errors.New("pipe: commin and commout each need a path")
	}
	if err := checkPipeName("commin", in); err != nil {
		return nil, err
	}
	if err := checkPipeName("commout", out); err != nil {
		return nil, err
	}
	if strings.EqualFold(in, out) {
		return nil, fmt.Errorf("pipe: commin and commout are the same pipe %s; use two pipes, one for each direction", in)
	}
	return &Driver{
		log:  newLogger(log),
		desc: fmt.Sprintf("pipe in=%s out=%s", in, out),
		sys: driverSys{ends: []endpoint{
			{role: "commin", path: in, dir: dirRead},
			{role: "commout", path: out, dir: dirWrite},
		}},
	}, nil
}

// NewComm returns a driver for one duplex named pipe \\.\pipe\NAME.
// Whichever side comes first creates it; the other connects to it.
func NewComm(path string, log *slog.Logger) (*Driver, error) {
	if path == "" {
		return nil, errors.New("pipe: comm needs a path")
	}
	if err := checkPipeName("comm", path); err != nil {
		return nil, err
	}
	return &Driver{
		log:  newLogger(log),
		desc: fmt.Sprintf("pipe comm=%s", path),
		sys:  driverSys{ends: []endpoint{{role: "comm", path: path, dir: dirDuplex}}},
	}, nil
}

// checkPipeName accepts \\.\pipe\NAME, NAME holding no backslash.
func checkPipeName(role, path string) error {
	if len(path) <= len(pipePrefix) || !strings.EqualFold(path[:len(pipePrefix)], pipePrefix) {
		return fmt.Errorf(`pipe: %s %s: want a named pipe \\.\pipe\NAME`, role, path)
	}
	if strings.ContainsRune(path[len(pipePrefix):], '\\') {
		return fmt.Errorf(`pipe: %s %s: the NAME in \\.\pipe\NAME cannot contain a backslash`, role, path)
	}
	if len(path) > maxPipeName {
		return fmt.Errorf("pipe: %s %s: name longer than %d characters", role, path, maxPipeName)
	}
	return nil
}

func (d *Driver) closeSys() error { return nil }

// winEnd is the state of one pipe while Open connects it.
type winEnd struct {
	endpoint
	name *uint16
	h    windows.Handle // connected handle, or the server instance while waiting
	ov   *windows.Overlapped
	wait bool // h is a server instance with ConnectNamedPipe pending on ov
	done bool // h is connected
}

// open connects every pipe of the driver. Each pipe is tried as a client
// first; if it does not exist, this side creates its only instance
// (FILE_FLAG_FIRST_PIPE_INSTANCE, so when both sides race one loses with
// ERROR_ACCESS_DENIED and connects as a client instead) and waits for the
// peer with an overlapped ConnectNamedPipe. Both pipes of a pair are
// worked on at once, so two sides each waiting as the server of its IN
// cannot deadlock.
func (d *Driver) open(ctx context.Context) (io.ReadWriteCloser, error) {
	ends := make([]*winEnd, len(d.sys.ends))
	for i, e := range d.sys.ends {
		name, err := windows.UTF16PtrFromString(e.path)
		if err != nil {
			return nil, fmt.Errorf("pipe: %s %s: %v", e.role, e.path, err)
		}
		ends[i] = &winEnd{endpoint: e, name: name, h: windows.InvalidHandle}
	}
	ok := false
	defer func() {
		if !ok {
			for _, e := range ends {
				e.abandon()
			}
		}
	}()

	// cancel is signalled when ctx ends, to wake WaitForMultipleObjects.
	cancel, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("pipe: CreateEvent: %v", err)
	}
	defer windows.CloseHandle(cancel)
	stop := context.AfterFunc(ctx, func() { windows.SetEvent(cancel) })
	defer stop()

	var b backoff
	logged := false
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		all := true
		for _, e := range ends {
			if e.done {
				continue
			}
			if e.wait {
				if err := e.poll(); err != nil {
					return nil, err
				}
			} else if err := e.try(); err != nil {
				return nil, err
			}
			if !e.done {
				all = false
			}
		}
		if all {
			break
		}
		if !logged {
			d.log.Info("pipe: waiting for the peer", "transport", d.desc)
			logged = true
		}
		// Sleep until a pending connection completes, ctx ends, or it is
		// time to try the client side again.
		handles := []windows.Handle{cancel}
		for _, e := range ends {
			if e.wait {
				handles = append(handles, e.ov.HEvent)
			}
		}
		delay := uint32(b.next() / time.Millisecond)
		if _, err := windows.WaitForMultipleObjects(handles, false, delay); err != nil {
			return nil, fmt.Errorf("pipe: WaitForMultipleObjects: %v", err)
		}
	}

	files := make([]*os.File, len(ends))
	for i, e := range ends {
		files[i] = os.NewFile(uintptr(e.h), e.path)
		e.h = windows.InvalidHandle
	}
	ok = true
	d.log.Debug("pipe: peer connected", "transport", d.desc)
	t := &transport{r: files[0], w: files[0], rname: d.sys.ends[0].path}
	for _, f := range files {
		t.closers = append(t.closers, f)
	}
	if len(files) == 2 {
		t.w = files[1]
	}
	return t, nil
}

// try connects e as a client, or creates it as the server and starts
// waiting for the peer. Transient failures leave e as it was, to be tried
// again after a backoff.
func (e *winEnd) try() error {
	var access uint32
	switch e.dir {
	case dirRead:
		access = windows.GENERIC_READ
	case dirWrite:
		access = windows.GENERIC_WRITE
	default:
		access = windows.GENERIC_READ | windows.GENERIC_WRITE
	}
	h, err := windows.CreateFile(e.name, access, 0, nil, windows.OPEN_EXISTING,
		windows.FILE_FLAG_OVERLAPPED|windows.SECURITY_SQOS_PRESENT|windows.SECURITY_IDENTIFICATION, 0)
	switch err {
	case nil:
		e.h, e.done = h, true
		return nil
	case windows.ERROR_PIPE_BUSY:
		return nil // the instance is still held by a previous peer
	case windows.ERROR_FILE_NOT_FOUND:
		return e.serve()
	case windows.ERROR_ACCESS_DENIED:
		return fmt.Errorf("pipe: %s %s: access denied (does the other side use this pipe in the same direction?)", e.role, e.path)
	}
	return fmt.Errorf("pipe: %s %s: %v", e.role, e.path, err)
}

// serve creates the pipe's only instance and starts ConnectNamedPipe.
func (e *winEnd) serve() error {
	var mode uint32
	switch e.dir {
	case dirRead:
		mode = windows.PIPE_ACCESS_INBOUND
	case dirWrite:
		mode = windows.PIPE_ACCESS_OUTBOUND
	default:
		mode = windows.PIPE_ACCESS_DUPLEX
	}
	h, err := windows.CreateNamedPipe(e.name,
		mode|windows.FILE_FLAG_FIRST_PIPE_INSTANCE|windows.FILE_FLAG_OVERLAPPED,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT|windows.PIPE_REJECT_REMOTE_CLIENTS,
		1, pipeBuffer, pipeBuffer, 0, nil)
	switch err {
	case nil:
	case windows.ERROR_ACCESS_DENIED, windows.ERROR_PIPE_BUSY:
		return nil // the peer created it first: connect to it next time
	default:
		return fmt.Errorf("pipe: %s %s: CreateNamedPipe: %v", e.role, e.path, err)
	}
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		windows.CloseHandle(h)
		return fmt.Errorf("pipe: CreateEvent: %v", err)
	}
	e.h, e.ov = h, &windows.Overlapped{HEvent: ev}
	switch err := windows.ConnectNamedPipe(h, e.ov); err {
	case nil, windows.ERROR_PIPE_CONNECTED:
		e.connected()
	case windows.ERROR_IO_PENDING:
		e.wait = true
	case windows.ERROR_NO_DATA:
		e.abandon() // a client came and went; start over
	default:
		e.abandon()
		return fmt.Errorf("pipe: %s %s: ConnectNamedPipe: %v", e.role, e.path, err)
	}
	return nil
}

// poll checks a pending ConnectNamedPipe.
func (e *winEnd) poll() error {
	var n uint32
	err := windows.GetOverlappedResult(e.h, e.ov, &n, false)
	switch err {
	case nil:
		e.wait = false
		e.connected()
	case windows.ERROR_IO_INCOMPLETE:
	case windows.ERROR_NO_DATA, windows.ERROR_BROKEN_PIPE:
		e.wait = false
		e.abandon() // a client came and went; start over
	default:
		e.wait = false
		e.abandon()
		return fmt.Errorf("pipe: %s %s: ConnectNamedPipe: %v", e.role, e.path, err)
	}
	return nil
}

// connected finishes a server end whose peer connected.
func (e *winEnd) connected() {
	windows.CloseHandle(e.ov.HEvent)
	e.ov = nil
	e.done = true
}

// abandon cancels a pending connection and closes what e holds.
func (e *winEnd) abandon() {
	if e.wait {
		var n uint32
		if windows.CancelIoEx(e.h, e.ov) == nil {
			// Wait for the cancellation, so the kernel is done with ov.
			_ = windows.GetOverlappedResult(e.h, e.ov, &n, true)
		}
		e.wait = false
	}
	if e.ov != nil {
		windows.CloseHandle(e.ov.HEvent)
		e.ov = nil
	}
	if e.h != windows.InvalidHandle {
		windows.CloseHandle(e.h)
		e.h = windows.InvalidHandle
	}
	e.done = false
}
