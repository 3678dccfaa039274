//go:build linux || freebsd || openbsd

package serialport

func (s System) devRoot() string {
	if s.DevRoot == "" {
		return "/dev"
	}
	return s.DevRoot
}
