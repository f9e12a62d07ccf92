package localistiod

import "syscall"

// sysProcAttr puts the child in its own process group and asks the kernel to
// SIGKILL it when the thread that started it dies (see pkg/localcluster: do
// not start processes from a goroutine locked to its OS thread).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
