package bench

import (
	"log/slog"
	"time"

	"github.com/sockmux/sockmux/pipe"
)

// fifoLibrary moves n bytes over one stream of a link whose two ends, in
// this process, run over the FIFO pair with the pipe driver sockmux link
// uses (--commin/--commout), and returns the rate the receiver saw.
func (s *suite) fifoLibrary(a2b, b2a string, n int64) (transferResult, error) {
	quiet := slog.New(slog.DiscardHandler)
	da, err := pipe.NewPair(b2a, a2b, quiet)
	if err != nil {
		return transferResult{}, err
	}
	defer da.Close()
	db, err := pipe.NewPair(a2b, b2a, quiet)
	if err != nil {
		return transferResult{}, err
	}
	defer db.Close()
	sys, err := newSockmuxOver(da, db)
	if err != nil {
		return transferResult{}, err
	}
	defer sys.close()
	c, srv, err := sys.open()
	if err != nil {
		return transferResult{}, err
	}
	defer c.Close()
	defer srv.Close()
	start := time.Now()
	go func() {
		off, left := 0, n
		for left > 0 {
			k := min(int64(chunk), left, int64(len(s.srv.pattern)-off))
			if _, err := c.Write(s.srv.pattern[off : off+int(k)]); err != nil {
				return
			}
			left -= k
			off = (off + int(k)) % len(s.srv.pattern)
		}
	}()
	return receive(srv, s.srv.pattern, n, start)
}
