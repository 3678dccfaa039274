//go:build unix

package tests

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// hostX% delegated SERVER=sockmux -P127.0.0.1:9000 PORT=127.0.0.1:9011,127.0.0.2:9012
// hostY% delegated SERVER=sockmux://127.0.0.1:9000 DEST=hostT:23
//
// Each item of a PORT= list listens on its own address.
func TestDelegatePortListWithAHostOnEachItem(t *testing.T) {
	bothSyntaxes(t, func(t *testing.T, syntax string) {
		server := greeterServer(t, "hostT\r\n")
		tunnel, p1, p2 := addr(freePort(t)), freePort(t), freePort(t)
		list := fmt.Sprintf("127.0.0.1:%d,127.0.0.2:%d", p1, p2)
		startExample(t, syntax,
			listenEnd(tunnel, []string{"PORT=" + list}, []string{"--port", list}),
			connectEnd(tunnel,
				[]string{fmt.Sprintf("DEST=127.0.0.1:%d", server)},
				[]string{"--dest", fmt.Sprintf("127.0.0.1:%d", server)}))
		dialGreeting(t, fmt.Sprintf("127.0.0.1:%d", p1), "hostT\r\n")
		dialGreeting(t, fmt.Sprintf("127.0.0.2:%d", p2), "hostT\r\n")
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p2), time.Second); err == nil {
			c.Close()
			assert.Fail(t, "the second item listens on 127.0.0.1 too", "port %d", p2)
		}
	})
}
