package localproc

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts the child in its own process group and asks the kernel to
// SIGKILL it when its parent dies (for example a test binary killed by a
// timeout).
//
// Pdeathsig fires when the *thread* that forked the child exits. The Go
// runtime only ends a thread when a goroutine exits while locked to it
// (runtime.LockOSThread), so do not start processes from such a goroutine.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
}

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }
