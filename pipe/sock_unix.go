//go:build unix

package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// sockState is what a NewComm driver over a Unix socket keeps between
// transports: the listener once this side listens.
type sockState struct {
	mu      sync.Mutex
	ln      *net.UnixListener
	lock    *os.File           // PATH.lock, flocked while ln is open
	current *net.UnixConn      // the newest accepted peer, until its transport closes
	conns   chan *net.UnixConn // accepted, not yet handed to Open; holds at most one
	closed  bool
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup
}

func newSockState() *sockState {
	return &sockState{conns: make(chan *net.UnixConn, 1), done: make(chan struct{})}
}

// openSock dials the socket, or listens on it when nobody does.
//
// The rule: dial PATH; on success that is the transport. If nothing
// accepts there (no file, or a stale one), take an exclusive, non-blocking
// flock on PATH.lock: the side that gets it removes a stale socket file,
// listens, and keeps both the lock and the listener until Driver.Close; the
// side that does not get it dials again after a backoff. The lock goes with
// the process, so a listener that died leaves a stale file but no lock.
func (d *Driver) openSock(ctx context.Context) (io.ReadWriteCloser, error) {
	s, path := d.sys.sock, d.sys.comm.path
	var b backoff
	logged := false
	for {
		s.mu.Lock()
		closed, listening := s.closed, s.ln != nil
		s.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if listening {
			return d.acceptSock(ctx)
		}
		c, err := dialUnix(ctx, path)
		if err == nil {
			d.log.Debug("pipe: connected to the listening peer", "transport", d.desc)
			return &transport{r: c, w: c, closers: []io.Closer{c}, rname: path}, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			ok, err := d.tryListen(ctx)
			if err != nil {
				return nil, err
			}
			if ok {
				continue
			}
		case errors.Is(err, syscall.EAGAIN):
			// The listener's backlog is full; try again.
		default:
			return nil, fmt.Errorf("pipe: comm %s: %s", path, errText(err))
		}
		if !logged {
			d.log.Info("pipe: waiting for the peer to listen on "+path, "transport", d.desc)
			logged = true
		}
		if err := b.wait(ctx); err != nil {
			return nil, err
		}
	}
}

func dialUnix(ctx context.Context, path string) (*net.UnixConn, error) {
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// tryListen makes this side the listener if it gets the lock. It reports
// false, nil when the other side holds the lock (and so listens, or is
// about to).
func (d *Driver) tryListen(ctx context.Context) (bool, error) {
	s, path := d.sys.sock, d.sys.comm.path
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	lf, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("pipe: comm %s: lock file: %s", path, errText(err))
	}
	got, err := tryLock(lf)
	if err != nil || !got {
		lf.Close()
		if err != nil {
			return false, fmt.Errorf("pipe: comm %s: lock %s.lock: %v", path, path, err)
		}
		return false, nil
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		lf.Close()
		return false, fmt.Errorf("pipe: comm %s: %s", path, errText(err))
	case fi.Mode()&fs.ModeSocket == 0:
		lf.Close()
		return false, fmt.Errorf("pipe: comm %s is %s, not a Unix socket", path, describe(fi.Mode()))
	default:
		// A listener that does not take the lock (another program) may
		// have appeared since the dial failed: then leave it alone.
		if c, err := dialUnix(ctx, path); err == nil {
			c.Close()
			lf.Close()
			return false, nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			lf.Close()
			return false, fmt.Errorf("pipe: comm %s: removing the stale socket: %s", path, errText(err))
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		lf.Close()
		return false, fmt.Errorf("pipe: comm %s: listen: %s", path, errText(err))
	}
	ln.SetUnlinkOnClose(true)
	s.ln, s.lock = ln, lf
	s.wg.Add(1)
	go d.acceptLoop(ln)
	d.log.Info("pipe: listening for the peer on "+path, "transport", d.desc)
	return true, nil
}

// acceptLoop accepts peers until the listener closes. A new peer replaces
// the previous one: its connection is closed, so its transport fails and
// the link's next Open returns the new peer.
func (d *Driver) acceptLoop(ln *net.UnixListener) {
	s := d.sys.sock
	defer s.wg.Done()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Warn("pipe: accept failed", "transport", d.desc, "err", err)
			select {
			case <-s.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		if s.current != nil {
			d.log.Info("pipe: a new peer connected, dropping the previous one", "transport", d.desc)
			s.current.Close()
		}
		s.current = c
		select {
		case old := <-s.conns:
			old.Close()
		default:
		}
		s.conns <- c
		s.mu.Unlock()
	}
}

// acceptSock waits for the next accepted peer.
func (d *Driver) acceptSock(ctx context.Context) (io.ReadWriteCloser, error) {
	s := d.sys.sock
	for {
		select {
		case c := <-s.conns:
			s.mu.Lock()
			live := c == s.current
			s.mu.Unlock()
			if !live {
				continue // replaced by a newer peer already, and closed
			}
			d.log.Debug("pipe: peer connected", "transport", d.desc)
			return &transport{
				r: c, w: c, closers: []io.Closer{c}, rname: d.sys.comm.path,
				onClose: func() {
					s.mu.Lock()
					if s.current == c {
						s.current = nil
					}
					s.mu.Unlock()
				},
			}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, ErrClosed
		}
	}
}

func (d *Driver) closeSys() error {
	s := d.sys.sock
	if s == nil {
		return nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	ln, lf := s.ln, s.lock
	s.ln, s.lock = nil, nil
	s.mu.Unlock()
	var err error
	if ln != nil {
		err = ln.Close() // removes the socket file
	}
	s.wg.Wait()
	select {
	case c := <-s.conns:
		c.Close()
	default:
	}
	if lf != nil {
		lf.Close() // releases the lock
	}
	return err
}
