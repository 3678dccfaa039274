package control

import (
	"io/fs"
	"os"
	"path/filepath"
)

// runtimeBase is sockmux under the user's temporary directory.
func runtimeBase() string { return filepath.Join(os.TempDir(), "sockmux") }

// isSocketFile accepts what Windows reports for an AF_UNIX socket file,
// an irregular file (a reparse point).
func isSocketFile(fi fs.FileInfo) bool { return fi.Mode().Type()&fs.ModeIrregular != 0 }
