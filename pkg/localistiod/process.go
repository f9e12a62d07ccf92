package localistiod

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is a child process in its own process group with its output
// appended to a log file. It follows pkg/localcluster's process handling.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once Wait has returned
	waitErr error         // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// startProcess starts bin with args and env (added to this process's
// environment), its output appended to logPath.
func startProcess(bin string, args, env []string, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log file %s: %w", logPath, err)
	}
	defer logFile.Close() // the child has its own copy
	fmt.Fprintf(logFile, "+ env %q\n+ %s %q\n", env, bin, args)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited, and how.
func (p *process) exited() (bool, string) {
	select {
	case <-p.done:
		if p.waitErr == nil {
			return true, "exited with status 0"
		}
		return true, p.waitErr.Error()
	default:
		return false, ""
	}
}

// stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs
// the group and waits for the process. It is safe to call more than once.
func (p *process) stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		pgid := p.cmd.Process.Pid
		if done, _ := p.exited(); !done {
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(grace):
			}
		}
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			p.stopErr = fmt.Errorf("killing process group %d: %w", pgid, err)
		}
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.stopErr = errors.Join(p.stopErr, fmt.Errorf("pid %d did not exit 30s after SIGKILL", pgid))
		}
	})
	return p.stopErr
}

// tailFile returns at most the last n lines of the file at path (reading at
// most its last 64 KiB); errors are rendered into the result.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	off := max(st.Size()-64<<10, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
