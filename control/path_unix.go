//go:build !windows

package control

import "io/fs"

func isSocketFile(fs.FileInfo) bool { return false }
