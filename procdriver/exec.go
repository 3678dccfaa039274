package procdriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/sockmux/sockmux/link"
)

// Exec is a link.Driver over a command's standard input and output. Each
// Open starts the command afresh (through the shell); when it exits the
// transport ends and the link opens the next. A command that keeps
// exiting soon after it started is restarted with a growing delay.
type Exec struct {
	Command string
	log     *slog.Logger

	// Backoff bounds: the delay before a restart starts at MinBackoff,
	// doubles for each command that ran less than StableAfter, and is
	// at most MaxBackoff.
	MinBackoff, MaxBackoff, StableAfter time.Duration

	mu      sync.Mutex
	closed  bool
	cur     *procConn
	started time.Time
	delay   time.Duration
}

// ErrDriverClosed is returned by Open after Close.
var ErrDriverClosed = errors.New("exec driver closed")

// NewExec returns a driver that runs command with the shell.
func NewExec(command string, log *slog.Logger) *Exec {
	if log == nil {
		log = slog.Default()
	}
	return &Exec{Command: command, log: log, MinBackoff: 250 * time.Millisecond, MaxBackoff: 10 * time.Second, StableAfter: 10 * time.Second}
}

// Open implements link.Driver: it starts the command, after the backoff
// delay when the last one did not run long.
func (d *Exec) Open(ctx context.Context) (io.ReadWriteCloser, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, ErrDriverClosed
	}
	var wait time.Duration
	if !d.started.IsZero() {
		if time.Since(d.started) >= d.StableAfter {
			d.delay = 0
		} else {
			d.delay = min(d.MaxBackoff, max(d.MinBackoff, 2*d.delay))
			wait = d.delay - time.Since(d.started)
		}
	}
	d.mu.Unlock()
	if wait > 0 {
		d.log.Info("exec: restarting the command", "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}

	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := shellCommand(d.Command)
	cmd.Stdin, cmd.Stdout = inR, outW
	cmd.Stderr = &lineLogger{log: d.log}
	cmd.WaitDelay = 2 * time.Second
	setProcessGroup(cmd)
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("exec %q: %w", d.Command, err)
	}
	p := &procConn{cmd: cmd, r: outR, w: inW, exited: make(chan struct{}), log: d.log}
	d.mu.Lock()
	d.started = time.Now()
	d.cur = p
	closed := d.closed
	d.mu.Unlock()
	d.log.Info("exec: command started", "pid", cmd.Process.Pid, "command", d.Command)
	go p.wait()
	if closed {
		p.Close()
		return nil, ErrDriverClosed
	}
	return p, nil
}

// Close stops the running command; Open fails from then on.
func (d *Exec) Close() error {
	d.mu.Lock()
	d.closed = true
	p := d.cur
	d.mu.Unlock()
	if p != nil {
		return p.Close()
	}
	return nil
}

// Properties implements link.Driver: a pipe neither loses nor corrupts.
func (d *Exec) Properties() link.Properties { return link.Properties{Reliable: true} }

func (d *Exec) String() string { return "exec " + d.Command }

// procConn is a running command's stdout (Read) and stdin (Write).
type procConn struct {
	cmd    *exec.Cmd
	r, w   *os.File
	exited chan struct{}
	once   sync.Once
	log    *slog.Logger
}

// wait reaps the command and ends the transport with it: what it wrote
// last can still be read, and a second later the output is closed even
// if a process the command started holds it open.
func (p *procConn) wait() {
	err := p.cmd.Wait()
	close(p.exited)
	if err != nil {
		p.log.Warn("exec: command exited", "pid", p.cmd.Process.Pid, "err", err)
	} else {
		p.log.Info("exec: command exited", "pid", p.cmd.Process.Pid)
	}
	p.w.Close()
	time.AfterFunc(time.Second, func() { p.r.Close() })
}

func (p *procConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *procConn) Write(b []byte) (int, error) { return p.w.Write(b) }

// Close ends the command: its input is closed and it is asked to stop
// (SIGTERM to its process group), then killed if it has not within two
// seconds.
func (p *procConn) Close() error {
	p.once.Do(func() {
		p.w.Close()
		p.r.Close()
		select {
		case <-p.exited:
			return
		default:
		}
		terminate(p.cmd)
		select {
		case <-p.exited:
		case <-time.After(2 * time.Second):
			kill(p.cmd)
			<-p.exited
		}
	})
	return nil
}

// lineLogger logs what the command writes to its standard error, a line
// at a time.
type lineLogger struct {
	log  *slog.Logger
	part []byte
}

func (l *lineLogger) Write(b []byte) (int, error) {
	l.part = append(l.part, b...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		l.log.Info("exec: stderr", "line", string(l.part[:i]))
		l.part = l.part[i+1:]
	}
	if len(l.part) > 4096 {
		l.log.Info("exec: stderr", "line", string(l.part))
		l.part = l.part[:0]
	}
	return len(b), nil
}
