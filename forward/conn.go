package forward

import (
	"bufio"
	"io"
	"math"
	"net"
	"strconv"
	"sync"

	"github.com/sockmux/sockmux/mux"
)

// Join copies between a client connection and a stream in both
// directions, passing half-closes along, until both directions are done
// or one fails; a failure resets the other side. It returns the bytes
// sent over the stream and received from it.
func Join(c net.Conn, s *mux.Stream) (up, down int64, err error) {
	return join(c, s)
}

// join copies a→b and b→a until both directions are done, passing
// half-closes along. When a direction fails, the side it writes to is
// aborted (a TCP peer sees a reset, a stream's far end is told why), which
// ends the other direction too. It returns the bytes copied each way and
// the first error.
func join(a, b net.Conn) (ab, ba int64, err error) {
	var wg sync.WaitGroup
	var abErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		ab, abErr = copyBuf(b, a)
		if abErr != nil {
			abort(b, "connection failed: "+abErr.Error())
			return
		}
		closeWrite(b)
	}()
	ba, err = copyBuf(a, b)
	if err != nil {
		abort(a, "connection failed: "+err.Error())
	} else {
		closeWrite(a)
	}
	wg.Wait()
	a.Close()
	b.Close()
	if err == nil {
		err = abErr
	}
	return ab, ba, err
}

// closeWrite half-closes c if it can, else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	c.Close()
}

// abort ends c so that its peer learns something went wrong: a TCP
// connection is reset, a stream is reset with reason.
func abort(c net.Conn, reason string) {
	switch x := c.(type) {
	case *mux.Stream:
		x.Reset(mux.CodeClosed, reason)
	case *bufConn:
		abort(x.Conn, reason)
	default:
		resetConn(c)
	}
}

// resetConn closes c so that its peer sees a reset, not a clean end.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBuf copies until EOF; unlike io.Copy it never hands the stream to a
// ReaderFrom/WriterTo, so each write is one scheduler-sized chunk.
func copyBuf(dst io.Writer, src io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// bufConn is a connection read through a bufio.Reader: a proxy reads its
// client's request with it, and whatever the client sent beyond the
// request is read first afterwards.
type bufConn struct {
	net.Conn
	r   *bufio.Reader
	lim *io.LimitedReader // between r and Conn
}

func newBufConn(c net.Conn) *bufConn {
	lim := &io.LimitedReader{R: c, N: math.MaxInt64}
	return &bufConn{Conn: c, r: bufio.NewReaderSize(lim, 4096), lim: lim}
}

// limit lets at most n more bytes be read from the connection (what is
// buffered already aside); a negative n lifts the limit.
func (c *bufConn) limit(n int64) {
	if n < 0 {
		n = math.MaxInt64
	}
	c.lim.N = n
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the connection underneath.
func (c *bufConn) CloseWrite() error {
	closeWrite(c.Conn)
	return nil
}

func portOf(a net.Addr) int {
	switch x := a.(type) {
	case *net.TCPAddr:
		return x.Port
	case *net.UDPAddr:
		return x.Port
	}
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}
