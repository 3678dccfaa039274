package procdriver

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"

	"github.com/sockmux/sockmux/link"
)

// ErrStdioEnded is returned by Stdio.Open once the standard input and
// output it handed out have ended: they cannot be opened again.
var ErrStdioEnded = errors.New("the link's standard input/output ended (stdio cannot be reopened)")

// Stdio is a link.Driver over a process's standard input and output. Its
// Open returns them once; when that transport ends (end of input, a
// write error, or the link giving it up) Done is closed and Open fails.
type Stdio struct {
	in   io.Reader
	out  io.Writer
	mu   sync.Mutex
	used bool
	done chan struct{}
	once sync.Once
}

// NewStdio returns a driver over os.Stdin and os.Stdout.
func NewStdio() *Stdio { return NewStdioOn(os.Stdin, os.Stdout) }

// NewStdioOn returns a driver over in and out.
func NewStdioOn(in io.Reader, out io.Writer) *Stdio {
	return &Stdio{in: in, out: out, done: make(chan struct{})}
}

// Open implements link.Driver.
func (d *Stdio) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.used {
		return nil, ErrStdioEnded
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.used = true
	return newPumped(d.in, d.out, func() { d.once.Do(func() { close(d.done) }) }), nil
}

// Done is closed when the transport Open returned has ended.
func (d *Stdio) Done() <-chan struct{} { return d.done }

// Properties implements link.Driver: a pipe neither loses nor corrupts.
func (d *Stdio) Properties() link.Properties { return link.Properties{Reliable: true} }

func (d *Stdio) String() string { return "stdio" }

// pumped is a transport over a reader and a writer whose blocking calls
// cannot be interrupted (a terminal or a pipe in blocking mode): a
// goroutine each does the reading and the writing, so Close returns at
// once and fails the Read and Write waiting on them.
type pumped struct {
	reads   chan []byte
	readErr error // set before reads is closed
	pending []byte
	writes  chan []byte
	written chan error
	closed  chan struct{}
	once    sync.Once
	onClose func()
}

func newPumped(r io.Reader, w io.Writer, onClose func()) *pumped {
	p := &pumped{
		reads:   make(chan []byte, 4),
		writes:  make(chan []byte),
		written: make(chan error, 1),
		closed:  make(chan struct{}),
		onClose: onClose,
	}
	go func() {
		defer close(p.reads)
		for {
			buf := make([]byte, 32<<10)
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case p.reads <- buf[:n]:
				case <-p.closed:
					return
				}
			}
			if err != nil {
				p.readErr = err
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case b := <-p.writes:
				_, err := w.Write(b)
				p.written <- err
			case <-p.closed:
				return
			}
		}
	}()
	return p
}

func (p *pumped) Read(b []byte) (int, error) {
	if len(p.pending) == 0 {
		select {
		case buf, ok := <-p.reads:
			if !ok {
				if p.readErr == nil || p.readErr == io.EOF {
					return 0, io.EOF
				}
				return 0, p.readErr
			}
			p.pending = buf
		case <-p.closed:
			return 0, os.ErrClosed
		}
	}
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	return n, nil
}

func (p *pumped) Write(b []byte) (int, error) {
	c := append([]byte(nil), b...)
	select {
	case p.writes <- c:
	case <-p.closed:
		return 0, os.ErrClosed
	}
	select {
	case err := <-p.written:
		if err != nil {
			return 0, err
		}
		return len(b), nil
	case <-p.closed:
		return 0, os.ErrClosed
	}
}

func (p *pumped) Close() error {
	p.once.Do(func() {
		close(p.closed)
		p.onClose()
	})
	return nil
}
