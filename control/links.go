package control

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// SocketDir is the directory of the control sockets that links started
// without --control make (see SocketPath).
func SocketDir() string {
	p, _ := SocketPath(DefaultName) // the default name is valid
	return filepath.Dir(p)
}

// Running asks every control socket in dir (SocketDir if empty) for its
// link's status, each for up to timeout at once, and returns the answers
// sorted by name. Sockets that do not answer (left behind by a link that
// is gone) are skipped; links started with --control elsewhere are not
// found.
func Running(dir string, timeout time.Duration) []Status {
	if dir == "" {
		dir = SocketDir()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out []Status
	)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sock") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		wg.Go(func() {
			st, err := Query(path, timeout)
			if err != nil {
				return
			}
			mu.Lock()
			out = append(out, *st)
			mu.Unlock()
		})
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
