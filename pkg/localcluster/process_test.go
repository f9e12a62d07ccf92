package localcluster

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
	p, err := startProcess("sh", "/bin/sh", []string{"-c", "trap '' TERM; sleep 300 & echo started; wait"}, log)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(groupMembers(t, p.pid())) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(groupMembers(t, p.pid())); n < 2 {
		t.Fatalf("expected shell and sleep in the process group, found %d", n)
	}
	start := time.Now()
	if err := p.stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v", d)
	}
	if left := groupMembers(t, p.pid()); len(left) > 0 {
		t.Errorf("processes left in group: %v", left)
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if exited, _ := p.exited(); !exited {
		t.Error("process not reaped")
	}
	if err := p.stop(0); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if !strings.Contains(tailFile(log, 5), "started") {
		t.Errorf("log lacks output: %q", tailFile(log, 5))
	}
}

func TestProcessExitIsReported(t *testing.T) {
	p, err := startProcess("false", "/bin/sh", []string{"-c", "exit 3"}, filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	<-p.done
	exited, err := p.exited()
	if !exited || err == nil || !strings.Contains(p.describeExit(), "exit status 3") {
		t.Errorf("exited=%v err=%v describe=%q", exited, err, p.describeExit())
	}
	if err := p.stop(time.Second); err != nil {
		t.Errorf("stop after exit: %v", err)
	}
}
