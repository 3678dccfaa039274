//go:build linux && (ppc || ppc64 || ppc64le)

package serialport

import "os"

// actualSpeed is not checked on PowerPC, whose termios2 ioctls differ.
func actualSpeed(*os.File) (int, bool) { return 0, false }
