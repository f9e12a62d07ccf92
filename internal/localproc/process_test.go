package localproc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// groupMembers returns the pids of the processes in process group pgid.
func groupMembers(t *testing.T, pgid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name "(...)": state ppid pgrp ...
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestProcessStopKillsWholeGroup(t *testing.T) {
	log := filepath.Join(t.TempDir(), "p.log")
	// The shell ignores SIGTERM, so stop must fall back to SIGKILL; its
	// background child must die with it.
	p, err := Start("sh", "/bin/sh", []string{"-c", "trap '' TERM; sleep 300 & echo started; wait"}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(groupMembers(t, p.Pid())) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(groupMembers(t, p.Pid())); n < 2 {
		t.Fatalf("expected shell and sleep in the process group, found %d", n)
	}
	start := time.Now()
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v", d)
	}
	if left := groupMembers(t, p.Pid()); len(left) > 0 {
		t.Errorf("processes left in group: %v", left)
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if exited, _ := p.Exited(); !exited {
		t.Error("process not reaped")
	}
	if err := p.Stop(0); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if !strings.Contains(TailFile(log, 5), "started") {
		t.Errorf("log lacks output: %q", TailFile(log, 5))
	}
}

func TestProcessExitIsReported(t *testing.T) {
	p, err := Start("false", "/bin/sh", []string{"-c", "exit 3"}, nil, filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	<-p.done
	exited, err := p.Exited()
	if !exited || err == nil || !strings.Contains(p.DescribeExit(), "exit status 3") {
		t.Errorf("exited=%v err=%v describe=%q", exited, err, p.DescribeExit())
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("stop after exit: %v", err)
	}
}
