package control

import "io/fs"

// isSocketFile accepts what Windows reports for an AF_UNIX socket file,
// an irregular file (a reparse point).
func isSocketFile(fi fs.FileInfo) bool { return fi.Mode().Type()&fs.ModeIrregular != 0 }
