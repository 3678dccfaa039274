//go:build !windows

package procdriver

import (
	"os/exec"
	"syscall"
)

// shellCommand runs command with sh -c.
func shellCommand(command string) *exec.Cmd { return exec.Command("sh", "-c", command) }

// setProcessGroup puts the command in a process group of its own, so
// that stopping it stops what it started too (ssh, a pipeline).
func setProcessGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

func terminate(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

func kill(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
