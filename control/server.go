package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one line of JSON a client sends.
type Request struct {
	Cmd  string       `json:"cmd"`            // "status" or "test-link"
	Peer string       `json:"peer,omitempty"` // with "status" on a hub: that peer's status
	Test *TestOptions `json:"test,omitempty"` // with "test-link"
}

// Response is a line of JSON the server answers with: one per request,
// except that "test-link" is answered by progress lines and then one
// with the result or an error.
type Response struct {
	Error    string        `json:"error,omitempty"`
	Status   *Status       `json:"status,omitempty"`
	Progress *TestProgress `json:"progress,omitempty"`
	Result   *TestResult   `json:"result,omitempty"`
}

// DefaultName is the name of a link started without --name.
const DefaultName = "default"

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// SocketPath returns the control socket of the link called name, NAME.sock
// in the directory socketDir gives for this system (DefaultSocketHelp
// describes it).
func SocketPath(name string) (string, error) {
	if name == "" {
		name = DefaultName
	}
	if !validName.MatchString(name) {
		return "", fmt.Errorf("--name %q: use letters, digits, '.', '_' and '-' (up to 64)", name)
	}
	return filepath.Join(realSocketDir(), name+".sock"), nil
}

// ErrInUse is returned by Listen when a live link holds the socket.
type ErrInUse struct {
	Path string
	PID  int
	Name string
}

func (e *ErrInUse) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("control socket %s is in use by another process", e.Path)
	}
	return fmt.Sprintf("control socket %s is in use by sockmux link %q (pid %d); give this link another --name or --control", e.Path, e.Name, e.PID)
}

// Server answers requests on a control socket.
type Server struct {
	ln   net.Listener
	path string
	col  *Collector
	log  *slog.Logger
	wg   sync.WaitGroup

	ctx     context.Context // Serve's, for link tests
	testing atomic.Bool     // a link test runs
}

// Listen creates the control socket at path (mode 0600, its directory
// created 0700 if missing). A socket left behind by a process that is gone
// is replaced; one a live process answers on is an *ErrInUse.
func Listen(path string, col *Collector, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket && !isSocketFile(fi) {
			return nil, fmt.Errorf("control socket %s: a file that is not a socket is in the way", path)
		}
		if st, err := Query(path, 2*time.Second); err == nil {
			return nil, &ErrInUse{Path: path, PID: st.PID, Name: st.Name}
		} else if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, &ErrInUse{Path: path}
		}
		log.Info("replacing a stale control socket", "path", path)
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &Server{ln: ln, path: path, col: col, log: log}, nil
}

// Path is where the socket is.
func (s *Server) Path() string { return s.path }

// Serve answers clients until ctx ends, then removes the socket.
func (s *Server) Serve(ctx context.Context) {
	s.ctx = ctx
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.log.Warn("control socket", "err", err)
			}
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
	s.ln.Close() // a Unix listener removes its socket file on Close
	s.wg.Wait()
}

// Close stops the server and removes the socket.
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	enc := json.NewEncoder(c)
	for {
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var req Request
		var resp Response
		if err := json.Unmarshal(line, &req); err != nil {
			resp.Error = "bad request: " + err.Error()
		} else {
			switch req.Cmd {
			case "status":
				if req.Peer != "" {
					st, err := s.col.PeerSnapshot(req.Peer)
					if err != nil {
						resp.Error = err.Error()
						break
					}
					resp.Status = &st
					break
				}
				st := s.col.Snapshot()
				resp.Status = &st
			case "test-link":
				if !s.runTest(c, enc, req.Test, &resp) {
					return
				}
			default:
				resp.Error = fmt.Sprintf("unknown command %q", req.Cmd)
			}
		}
		if enc.Encode(&resp) != nil {
			return
		}
	}
}

// runTest runs a link test for a client, sending it progress lines; the
// final answer is left in resp. It returns false when the client went
// away (the test is then stopped).
func (s *Server) runTest(c net.Conn, enc *json.Encoder, opts *TestOptions, resp *Response) bool {
	if opts == nil {
		opts = &TestOptions{Seconds: DefaultTestSeconds}
	}
	if err := opts.Check(); err != nil {
		resp.Error = err.Error()
		return true
	}
	if !s.testing.CompareAndSwap(false, true) {
		resp.Error = ErrTestRunning.Error()
		return true
	}
	defer s.testing.Store(false)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	gone := false
	s.log.Info("link test", "seconds", opts.Seconds, "both", opts.Both)
	res, err := RunTest(ctx, s.col.src, *opts, func(p TestProgress) {
		if gone {
			return
		}
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		if enc.Encode(&Response{Progress: &p}) != nil {
			gone = true
			cancel() // the client hung up: stop testing
		}
	})
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if gone {
		s.log.Info("link test stopped: its client went away")
		return false
	}
	if err != nil {
		s.log.Warn("link test failed", "err", err)
		resp.Error = "link test: " + err.Error()
		return true
	}
	s.log.Info("link test done", "upload_Bps", int64(res.Upload.Goodput), "download_Bps", int64(res.Download.Goodput),
		"rtt_idle_ms", res.RTTIdle.Avg*1000, "frames_resent", res.FramesResent, "frames_bad", res.FramesBad)
	resp.Result = res
	return true
}

// Client is a connection to a link's control socket.
type Client struct {
	c   net.Conn
	r   *bufio.Reader
	enc *json.Encoder
}

// Dial connects to the control socket at path.
func Dial(path string, timeout time.Duration) (*Client, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no link at %s (is sockmux link running with this --name or --control?)", path)
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return &Client{c: c, r: bufio.NewReader(c), enc: json.NewEncoder(c)}, nil
}

// Status asks for the link's status.
func (cl *Client) Status(timeout time.Duration) (*Status, error) {
	return cl.PeerStatus("", timeout)
}

// PeerStatus asks a hub for the full status of its peer called peer; ""
// asks for the status of the link (or the hub) itself.
func (cl *Client) PeerStatus(peer string, timeout time.Duration) (*Status, error) {
	_ = cl.c.SetDeadline(time.Now().Add(timeout))
	if err := cl.enc.Encode(Request{Cmd: "status", Peer: peer}); err != nil {
		return nil, err
	}
	resp, err := cl.read()
	if err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	if resp.Status == nil {
		return nil, errors.New("control socket: an answer without a status")
	}
	return resp.Status, nil
}

// read reads one answer line.
func (cl *Client) read() (Response, error) {
	var resp Response
	line, err := cl.r.ReadBytes('\n')
	if err != nil {
		return resp, fmt.Errorf("control socket: %w", err)
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return resp, fmt.Errorf("control socket: bad answer: %w", err)
	}
	return resp, nil
}

// TestLink asks the link to test itself end to end; progress is called
// with each progress line. It waits as long as the test takes.
func (cl *Client) TestLink(opts TestOptions, progress func(TestProgress)) (*TestResult, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	_ = cl.c.SetDeadline(time.Now().Add(time.Minute))
	if err := cl.enc.Encode(Request{Cmd: "test-link", Test: &opts}); err != nil {
		return nil, err
	}
	for {
		// The test sends progress several times a second; silence for a
		// minute means the link process is stuck or gone.
		_ = cl.c.SetDeadline(time.Now().Add(time.Minute))
		resp, err := cl.read()
		if err != nil {
			return nil, err
		}
		switch {
		case resp.Error != "":
			return nil, errors.New(resp.Error)
		case resp.Result != nil:
			return resp.Result, nil
		case resp.Progress != nil:
			if progress != nil {
				progress(*resp.Progress)
			}
		default:
			return nil, errors.New("control socket: an answer without a result (is the link an older sockmux?)")
		}
	}
}

// Close hangs up.
func (cl *Client) Close() error { return cl.c.Close() }

// Query dials path, asks for the status once and hangs up.
func Query(path string, timeout time.Duration) (*Status, error) {
	return QueryPeer(path, "", timeout)
}

// QueryPeer is Query for a hub's peer (Client.PeerStatus).
func QueryPeer(path, peer string, timeout time.Duration) (*Status, error) {
	cl, err := Dial(path, timeout)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.PeerStatus(peer, timeout)
}
