package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// Reexec runs the current executable again, with the same arguments, working
// directory and environment plus EnvInside=1, in a new network namespace,
// with stdin, stdout and stderr shared. As root the child gets only a new
// network namespace; otherwise it also gets a new user namespace in which it
// is root (like `unshare --net --map-root-user`). SIGINT and SIGTERM are
// passed on to the child, which the kernel kills if this process dies.
// Reexec returns the child's exit status (128+signal if a signal killed it).
func Reexec() (int, error) {
	if Inside() {
		return 0, fmt.Errorf("re-executing in a new network namespace: already inside one (%s=1)", EnvInside)
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("re-executing in a new network namespace: locating the executable: %w", err)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), EnvInside+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	attr, err := namespaceAttr()
	if err != nil {
		return 0, fmt.Errorf("re-executing in a new network namespace: %w", err)
	}
	cmd.SysProcAttr = attr

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("re-executing %s in a new network namespace: %w (this needs root, or unprivileged user namespaces)", exe, err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, fmt.Errorf("waiting for %s in its network namespace: %w", exe, err)
}
