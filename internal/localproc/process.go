// Package localproc runs the child processes of a local environment (etcd,
// kube-apiserver, istiod): each in its own process group, its output appended
// to a log file, killed by the kernel if its parent dies, and stopped with
// SIGTERM then SIGKILL so that nothing is left behind.
package localproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopGracePeriod is how long Stop usually waits after SIGTERM before it
// sends SIGKILL.
const StopGracePeriod = 10 * time.Second

// Process is a child process running in its own process group, with its
// stdout and stderr appended to a log file.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once Wait has returned
	waitErr error         // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// Start starts bin with args and env (added to this process's environment),
// its output appended to logPath. The process gets its own process group
// and, on Linux, SIGKILL when the thread that started it dies.
func Start(name, bin string, args, env []string, logPath string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log file for %s: %w", name, err)
	}
	if len(env) > 0 {
		fmt.Fprintf(logFile, "+ env %q\n", env)
	}
	fmt.Fprintf(logFile, "+ %s %q\n", bin, args)
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = logFile // an *os.File: no copying goroutine, Wait never blocks on pipes
	cmd.Stderr = logFile
	cmd.Stdin = nil
	cmd.SysProcAttr = sysProcAttr()
	if err := startCmd(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	// The child has its own copy of the descriptor.
	logFile.Close()
	p := &Process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id (also the process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, waits up to grace for the process
// to exit, then sends SIGKILL to the group. It always kills the group one last
// time so that no child of the process survives. It is safe to call Stop
// more than once.
func (p *Process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		pgid := p.Pid()
		if exited, _ := p.Exited(); !exited {
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(grace):
			}
		}
		// SIGKILL the group even when the leader exited, in case it left
		// children behind. ESRCH means the group is already empty.
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			p.stopErr = fmt.Errorf("killing %s (process group %d): %w", p.name, pgid, err)
		}
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.stopErr = errors.Join(p.stopErr, fmt.Errorf("%s (pid %d) did not exit 30s after SIGKILL", p.name, pgid))
		}
		// Give the other members of the group (reaped by init, not by us)
		// a moment to disappear, so that callers see them gone.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return p.stopErr
}

// DescribeExit describes how an exited process ended, for error messages.
func (p *Process) DescribeExit() string {
	if p.waitErr == nil {
		return "exited with status 0"
	}
	return p.waitErr.Error()
}

// TailFile returns at most the last n lines of the file at path (reading at
// most the last 64 KiB). Errors are rendered into the result.
func TailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	const maxRead = 64 << 10
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	off := st.Size() - maxRead
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return tailLines(buf, n)
}

func tailLines(buf []byte, n int) string {
	buf = bytes.TrimRight(buf, "\n")
	lines := bytes.Split(buf, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before it is used; callers retry on
// "address already in use".
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PortInUse reports whether a log tail shows that a listen failed because
// the port was taken.
func PortInUse(logTail string) bool {
	return bytes.Contains([]byte(logTail), []byte("address already in use"))
}

// FlagName returns the name of a --flag or --flag=value argument.
func FlagName(arg string) (string, error) {
	if !strings.HasPrefix(arg, "--") || len(arg) < 3 || arg[2] == '=' {
		return "", fmt.Errorf("argument %q is not of the form --flag=value", arg)
	}
	name, _, _ := strings.Cut(arg[2:], "=")
	return name, nil
}

// MergeArgs returns base followed by extra, dropping the --flag arguments of
// base whose flag extra sets again. Positional arguments of base stay.
func MergeArgs(base, extra []string) []string {
	override := map[string]bool{}
	for _, a := range extra {
		if n, err := FlagName(a); err == nil {
			override[n] = true
		}
	}
	out := make([]string, 0, len(base)+len(extra))
	for _, a := range base {
		if n, err := FlagName(a); err == nil && override[n] {
			continue
		}
		out = append(out, a)
	}
	return append(out, extra...)
}

// GetOK sends GET url and returns nil on 200 OK, else an error quoting the
// status and the start of the body: the readiness probe of a started process.
func GetOK(ctx context.Context, client *http.Client, url string) error {
	_, err := Get(ctx, client, url)
	return err
}

// Get sends GET url and returns the start of the body (8 KiB) on 200 OK,
// else an error quoting the status and the start of the body: a probe that
// also reads what the process answered.
func Get(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8192))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
