//go:build !windows

package control

import (
	"fmt"
	"io/fs"
	"os"
)

// runtimeBase is /tmp/sockmux-UID, private to the user.
func runtimeBase() string { return fmt.Sprintf("/tmp/sockmux-%d", os.Getuid()) }

func isSocketFile(fs.FileInfo) bool { return false }
