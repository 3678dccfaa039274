package procdriver

import "os/exec"

// shellCommand runs command with cmd.exe /C.
func shellCommand(command string) *exec.Cmd { return exec.Command("cmd.exe", "/C", command) }

func setProcessGroup(*exec.Cmd) {}

// terminate kills the command: Windows has no gentler signal for it.
func terminate(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func kill(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
