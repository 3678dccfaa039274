//go:build unix

package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// kind is what a path names.
type kind int

const (
	kindFIFO kind = iota + 1
	kindCharDev
	kindSocket
)

// endpoint is one path the driver opens.
type endpoint struct {
	role string // "commin", "commout" or "comm", for messages
	path string
	kind kind
}

// driverSys is the POSIX part of a Driver.
type driverSys struct {
	pair    bool
	in, out endpoint   // pair mode
	comm    endpoint   // comm mode
	sock    *sockState // comm mode over a Unix socket
}

// recheckInterval is how often a FIFO transport renews the deadline of a
// pending read or write, so that the peer closing its end is noticed even
// where the poller misses it (kqueue: Go issue 24164). Linux's epoll reports
// it, so there it is zero. Tests set it to exercise the fallback.
var recheckInterval = defaultRecheck()

func defaultRecheck() time.Duration {
	switch runtime.GOOS {
	case "linux", "android":
		return 0
	}
	return 250 * time.Millisecond
}

// errRetry makes Open start over: the FIFO was replaced while waiting.
var errRetry = errors.New("pipe: FIFO replaced, reopening")

// NewPair returns a driver that reads from in and writes to out: DeleGate's
// commin@IN and commout@OUT. A missing path is created as a FIFO with mode
// 0600; an existing one must be a FIFO or a character device that this
// process may read (in) or write (out). in and out must be different files.
// Every problem is reported here, at once, as a one-line error. The FIFOs
// are never removed.
func NewPair(in, out string, log *slog.Logger) (*Driver, error) {
	if in == "" || out == "" {
		return nil, errors.New("pipe: commin and commout each need a path")
	}
	if err := notWindowsName("commin", in); err != nil {
		return nil, err
	}
	if err := notWindowsName("commout", out); err != nil {
		return nil, err
	}
	if filepath.Clean(in) == filepath.Clean(out) {
		return nil, sameFileError(in, out)
	}
	ein := endpoint{role: "commin", path: in}
	eout := endpoint{role: "commout", path: out}
	inMissing, err := inspectEnd(&ein, unix.R_OK)
	if err != nil {
		return nil, err
	}
	outMissing, err := inspectEnd(&eout, unix.W_OK)
	if err != nil {
		return nil, err
	}
	var created []string
	undo := func() {
		for _, p := range created {
			_ = os.Remove(p)
		}
	}
	for _, m := range []struct {
		e       *endpoint
		missing bool
		access  uint32
	}{{&ein, inMissing, unix.R_OK}, {&eout, outMissing, unix.W_OK}} {
		if !m.missing {
			continue
		}
		made, err := makeFIFO(m.e, m.access)
		if err != nil {
			undo()
			return nil, err
		}
		if made {
			created = append(created, m.e.path)
		}
	}
	fin, err1 := os.Stat(in)
	fout, err2 := os.Stat(out)
	if err := errors.Join(err1, err2); err != nil {
		undo()
		return nil, fmt.Errorf("pipe: %s", errText(err))
	}
	if os.SameFile(fin, fout) {
		undo()
		return nil, sameFileError(in, out)
	}
	return &Driver{
		log:  newLogger(log),
		desc: fmt.Sprintf("pipe in=%s out=%s", in, out),
		sys:  driverSys{pair: true, in: ein, out: eout},
	}, nil
}

// NewComm returns a driver for one two-way channel at path: a character
// device (opened read-write), or a Unix domain socket. A missing path
// becomes a Unix socket: see the package documentation for which side
// listens. A FIFO, a regular file or a directory is refused at once with a
// one-line error, and so is a missing path under /dev.
func NewComm(path string, log *slog.Logger) (*Driver, error) {
	if path == "" {
		return nil, errors.New("pipe: comm needs a path")
	}
	if err := notWindowsName("comm", path); err != nil {
		return nil, err
	}
	e := endpoint{role: "comm", path: path}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := parentDir(&e); err != nil {
			return nil, err
		}
		if abs, aerr := filepath.Abs(path); aerr == nil && strings.HasPrefix(abs, "/dev/") {
			return nil, fmt.Errorf("pipe: comm %s: no such device", path)
		}
		e.kind = kindSocket
	case err != nil:
		return nil, fmt.Errorf("pipe: comm %s: %s", path, errText(err))
	case fi.Mode()&fs.ModeSocket != 0:
		e.kind = kindSocket
	case fi.Mode()&fs.ModeCharDevice != 0:
		if name := nowhereDevice(fi); name != "" {
			return nil, fmt.Errorf("pipe: comm %s is %s, which reaches no peer; want a serial device, a character device that leads to the peer, or a Unix socket path", path, name)
		}
		if err := unix.Access(path, unix.R_OK|unix.W_OK); err != nil {
			return nil, fmt.Errorf("pipe: comm %s: %v (need read and write access)", path, err)
		}
		e.kind = kindCharDev
	case fi.Mode()&fs.ModeNamedPipe != 0:
		return nil, fmt.Errorf("pipe: comm %s is a FIFO, which carries one direction only; use commin and commout with two FIFOs", path)
	default:
		return nil, fmt.Errorf("pipe: comm %s is %s; want a serial device, another character device or a Unix socket path", path, describe(fi.Mode()))
	}
	d := &Driver{
		log:  newLogger(log),
		desc: fmt.Sprintf("pipe comm=%s", path),
		sys:  driverSys{comm: e},
	}
	if e.kind == kindSocket {
		if max := len(unix.RawSockaddrUnix{}.Path); len(path) > max {
			return nil, fmt.Errorf("pipe: comm %s: path too long for a Unix socket (%d bytes, at most %d)", path, len(path), max)
		}
		d.sys.sock = newSockState()
	}
	return d, nil
}

// nowhereDevices are character devices that discard what is written and
// read as end of file, zeros or noise: a link over one never meets a peer.
var nowhereDevices = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}

// nowhereDevice returns the name of the nowhere device fi is, or "".
func nowhereDevice(fi fs.FileInfo) string {
	for _, name := range nowhereDevices {
		if dfi, err := os.Stat(name); err == nil && os.SameFile(fi, dfi) {
			return name
		}
	}
	return ""
}

// notWindowsName refuses a Windows named pipe name on POSIX, where it
// would silently become an oddly named file in the working directory.
func notWindowsName(role, path string) error {
	if strings.HasPrefix(path, `\\`) {
		return fmt.Errorf(`pipe: %s %s is a Windows named pipe name; here give a file system path`, role, path)
	}
	return nil
}

func sameFileError(in, out string) error {
	if in == out {
		return fmt.Errorf("pipe: commin and commout are the same file %s; use two FIFOs, one for each direction", in)
	}
	return fmt.Errorf("pipe: commin %s and commout %s are the same file; use two FIFOs, one for each direction", in, out)
}

// inspectEnd checks an existing path and sets e.kind, or reports that the
// path is missing (and may be created: its directory exists).
func inspectEnd(e *endpoint, access uint32) (missing bool, err error) {
	fi, err := os.Stat(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		if _, lerr := os.Lstat(e.path); lerr == nil {
			return false, fmt.Errorf("pipe: %s %s is a dangling symbolic link", e.role, e.path)
		}
		return true, parentDir(e)
	}
	if err != nil {
		return false, fmt.Errorf("pipe: %s %s: %s", e.role, e.path, errText(err))
	}
	switch m := fi.Mode(); {
	case m&fs.ModeNamedPipe != 0:
		e.kind = kindFIFO
	case m&fs.ModeCharDevice != 0:
		e.kind = kindCharDev
	default:
		return false, fmt.Errorf("pipe: %s %s is %s; want a FIFO (named pipe) or a character device", e.role, e.path, describe(m))
	}
	if err := unix.Access(e.path, access); err != nil {
		what := "read"
		if access == unix.W_OK {
			what = "write"
		}
		return false, fmt.Errorf("pipe: %s %s: %v (cannot %s it)", e.role, e.path, err, what)
	}
	return false, nil
}

// parentDir checks that a missing path's directory exists.
func parentDir(e *endpoint) error {
	dir := filepath.Dir(e.path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pipe: %s %s: directory %s: %s", e.role, e.path, dir, errText(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("pipe: %s %s: %s is not a directory", e.role, e.path, dir)
	}
	return nil
}

// makeFIFO creates e.path as a FIFO. If the peer created it first, the
// path is inspected again. It reports whether this call created it.
func makeFIFO(e *endpoint, access uint32) (bool, error) {
	err := unix.Mkfifo(e.path, 0o600)
	if err == nil {
		e.kind = kindFIFO
		return true, nil
	}
	if err != unix.EEXIST {
		return false, fmt.Errorf("pipe: %s %s: cannot create a FIFO: %v", e.role, e.path, err)
	}
	missing, err := inspectEnd(e, access)
	if err == nil && missing {
		err = fmt.Errorf("pipe: %s %s: cannot create a FIFO: it keeps disappearing", e.role, e.path)
	}
	return false, err
}

// describe names a file mode for an error message.
func describe(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSocket != 0:
		return "a Unix socket"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	}
	return "not a FIFO or device (mode " + m.String() + ")"
}

// errText is err without the "stat PATH:" prefix of an *fs.PathError, the
// caller naming the path itself.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func (d *Driver) open(ctx context.Context) (io.ReadWriteCloser, error) {
	switch {
	case d.sys.pair:
		for {
			t, err := d.openPair(ctx)
			if err != errRetry {
				return t, err
			}
			d.log.Debug("pipe: FIFO replaced while waiting, reopening", "transport", d.desc)
		}
	case d.sys.comm.kind == kindSocket:
		return d.openSock(ctx)
	default:
		fd, err := d.openEnd(ctx, d.sys.comm, unix.O_RDWR)
		if err != nil {
			return nil, err
		}
		f := newFile(fd, d.sys.comm.path)
		return &transport{r: f, w: f, closers: []io.Closer{f}, rname: d.sys.comm.path}, nil
	}
}

// openPair opens IN then OUT, then waits for a writer on IN. Both sides
// doing it in this order cannot deadlock: opening a FIFO for reading
// without blocking succeeds at once, which lets the peer's write open
// succeed, and so on.
func (d *Driver) openPair(ctx context.Context) (io.ReadWriteCloser, error) {
	in, out := d.sys.in, d.sys.out
	rfd, err := d.openEnd(ctx, in, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	wfd, err := d.openEnd(ctx, out, unix.O_WRONLY)
	if err != nil {
		unix.Close(rfd)
		return nil, err
	}
	var pre []byte
	if in.kind == kindFIFO {
		if pre, err = d.waitWriter(ctx, in, rfd); err != nil {
			unix.Close(rfd)
			unix.Close(wfd)
			return nil, err
		}
	}
	r := newFile(rfd, in.path)
	w := newFile(wfd, out.path)
	var ri, wi time.Duration
	if in.kind == kindFIFO {
		ri = recheckInterval
	}
	if out.kind == kindFIFO {
		wi = recheckInterval
	}
	d.log.Debug("pipe: peer connected", "transport", d.desc)
	return &transport{
		r:       side(r, ri),
		w:       side(w, wi),
		closers: []io.Closer{r, w},
		rname:   in.path,
		pre:     pre,
	}, nil
}

// openEnd opens e without blocking and returns a non-blocking descriptor.
// It waits, honouring ctx, while a FIFO opened for writing has no reader
// (ENXIO) or a character device is absent; it recreates a FIFO that was
// removed.
func (d *Driver) openEnd(ctx context.Context, e endpoint, mode int) (int, error) {
	var b backoff
	logged := false
	for {
		fd, err := unix.Open(e.path, mode|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err == nil {
			if err := checkKind(e, fd); err != nil {
				unix.Close(fd)
				return -1, err
			}
			if e.kind == kindFIFO {
				growFIFO(fd)
			}
			return fd, nil
		}
		var what string
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENXIO && e.kind == kindFIFO:
			what = "waiting for the peer to open " + e.path
		case err == unix.ENOENT && e.kind == kindFIFO:
			if err := unix.Mkfifo(e.path, 0o600); err != nil && err != unix.EEXIST {
				return -1, fmt.Errorf("pipe: %s %s was removed and cannot be created again: %v", e.role, e.path, err)
			}
			d.log.Info("pipe: FIFO was removed, created it again", "path", e.path)
		case (err == unix.ENOENT || err == unix.ENXIO || err == unix.ENODEV) && e.kind == kindCharDev:
			what = "waiting for device " + e.path
		default:
			return -1, fmt.Errorf("pipe: %s %s: %v", e.role, e.path, err)
		}
		if what != "" && !logged {
			d.log.Info("pipe: "+what, "transport", d.desc)
			logged = true
		}
		if err := b.wait(ctx); err != nil {
			return -1, err
		}
	}
}

// checkKind makes sure an opened descriptor is still what NewPair or
// NewComm accepted.
func checkKind(e endpoint, fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("pipe: %s %s: %v", e.role, e.path, err)
	}
	t := uint32(st.Mode) & unix.S_IFMT
	switch {
	case e.kind == kindFIFO && t == unix.S_IFIFO, e.kind == kindCharDev && t == unix.S_IFCHR:
		return nil
	case e.kind == kindFIFO:
		return fmt.Errorf("pipe: %s %s is no longer a FIFO", e.role, e.path)
	}
	return fmt.Errorf("pipe: %s %s is no longer a character device", e.role, e.path)
}

// waitWriter waits until some process has IN open for writing. A FIFO
// open for reading in non-blocking mode reports end-of-file (read returns
// 0) while it has no writer, and EAGAIN when a writer is there but has
// written nothing, so a one-byte read tells them apart; a byte it happens
// to read is returned to be delivered first. Once a writer has been seen,
// end-of-file means the peer left.
func (d *Driver) waitWriter(ctx context.Context, e endpoint, fd int) ([]byte, error) {
	var b backoff
	var buf [1]byte
	logged := false
	for {
		n, err := unix.Read(fd, buf[:])
		switch {
		case err == unix.EAGAIN:
			return nil, nil
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, fmt.Errorf("pipe: %s %s: %v", e.role, e.path, err)
		case n > 0:
			return []byte{buf[0]}, nil
		}
		if replaced(e.path, fd) {
			return nil, errRetry
		}
		if !logged {
			d.log.Info("pipe: waiting for the peer to open "+e.path, "transport", d.desc)
			logged = true
		}
		if err := b.wait(ctx); err != nil {
			return nil, err
		}
	}
}

// replaced reports whether path no longer names the file open as fd.
func replaced(path string, fd int) bool {
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Stat(path, &b) != nil {
		return true
	}
	return a.Dev != b.Dev || a.Ino != b.Ino
}

// newFile wraps a non-blocking descriptor in an *os.File, which puts it
// in Go's poller: reads and writes park the goroutine, not a thread, and
// Close wakes them. A descriptor the poller refuses is made blocking.
func newFile(fd int, name string) *os.File {
	f := os.NewFile(uintptr(fd), name)
	if err := f.SetDeadline(time.Time{}); errors.Is(err, os.ErrNoDeadline) {
		_ = unix.SetNonblock(fd, false)
	}
	return f
}

// wait sleeps for the next delay or until ctx ends.
func (b *backoff) wait(ctx context.Context) error {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pollFile reads and writes an *os.File with deadlines renewed every
// interval. It exists for kqueue platforms, where closing the last writer of
// a FIFO may not wake a reader waiting in the poller (Go issue 24164): when
// the deadline fires the read is simply tried again, and read(2) then
// reports the end of the FIFO.
type pollFile struct {
	f     *os.File
	every time.Duration
}

func (p pollFile) Read(b []byte) (int, error) {
	for {
		if err := p.f.SetReadDeadline(time.Now().Add(p.every)); err != nil {
			return p.f.Read(b)
		}
		n, err := p.f.Read(b)
		if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
	}
}

func (p pollFile) Write(b []byte) (int, error) {
	total := 0
	for {
		if err := p.f.SetWriteDeadline(time.Now().Add(p.every)); err != nil {
			n, err := p.f.Write(b)
			return total + n, err
		}
		n, err := p.f.Write(b)
		total += n
		b = b[n:]
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
	}
}

// side wraps f for the transport, renewing deadlines every interval when
// interval is positive.
func side(f *os.File, interval time.Duration) interface {
	io.Reader
	io.Writer
} {
	if interval > 0 {
		return pollFile{f: f, every: interval}
	}
	return f
}
