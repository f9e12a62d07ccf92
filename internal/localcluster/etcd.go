package localcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/meshfleet/meshfleet/internal/localproc"
)

// etcdStartTimeout bounds how long StartEtcd waits for etcd to be healthy
// when ctx has no earlier deadline.
const etcdStartTimeout = 30 * time.Second

// Etcd is a running single-member etcd listening on 127.0.0.1. Several
// clusters can share it, each under its own key prefix.
type Etcd struct {
	// Endpoint is the client URL, http://127.0.0.1:<port>.
	Endpoint string
	// DataDir is etcd's data directory.
	DataDir string
	// LogPath is the file etcd's output goes to.
	LogPath string

	proc *localproc.Process
	// relaunch starts etcd again with the same command line, for Restart.
	relaunch func() (*localproc.Process, error)
}

// StartEtcd starts bin as a single-member etcd with its client and peer URLs
// on free ports of 127.0.0.1, its data in <dir>/etcd-data and its output in
// <dir>/etcd.log, and waits until GET /health reports healthy. ctx bounds the
// start-up only (at most 30 s); etcd runs until Stop.
func StartEtcd(ctx context.Context, dir, bin string) (*Etcd, error) {
	if bin == "" {
		return nil, errors.New("starting etcd: no etcd binary given")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting etcd: creating %s: %w", dir, err)
	}
	ctx, cancel := context.WithTimeout(ctx, etcdStartTimeout)
	defer cancel()

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		e, err := startEtcdOnce(ctx, dir, bin)
		if err == nil {
			return e, nil
		}
		lastErr = err
		if !errors.Is(err, errPortInUse) || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

var errPortInUse = errors.New("port already in use")

func startEtcdOnce(ctx context.Context, dir, bin string) (*Etcd, error) {
	clientPort, err := localproc.FreePort()
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	peerPort, err := localproc.FreePort()
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	dataDir := filepath.Join(dir, "etcd-data")
	// A failed attempt may have left a half-initialised member behind.
	if err := os.RemoveAll(dataDir); err != nil {
		return nil, fmt.Errorf("starting etcd: clearing %s: %w", dataDir, err)
	}
	e := &Etcd{
		Endpoint: "http://127.0.0.1:" + strconv.Itoa(clientPort),
		DataDir:  dataDir,
		LogPath:  filepath.Join(dir, "etcd.log"),
	}
	args := etcdArgs(dataDir, clientPort, peerPort)
	e.relaunch = func() (*localproc.Process, error) { return localproc.Start("etcd", bin, args, nil, e.LogPath) }
	p, err := e.relaunch()
	if err != nil {
		return nil, err
	}
	e.proc = p
	if err := e.waitHealthy(ctx); err != nil {
		_ = p.Stop(0)
		tail := localproc.TailFile(e.LogPath, 30)
		if localproc.PortInUse(tail) {
			err = errors.Join(err, errPortInUse)
		}
		return nil, fmt.Errorf("starting etcd: %w; last lines of %s:\n%s", err, e.LogPath, tail)
	}
	return e, nil
}

// etcdArgs returns the etcd command line.
func etcdArgs(dataDir string, clientPort, peerPort int) []string {
	clientURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	return []string{
		"--name=localcluster",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=localcluster=" + peerURL,
		"--initial-cluster-state=new",
		"--logger=zap",
		"--log-outputs=stderr",
		"--log-level=warn",
		// Several API servers share this etcd under different prefixes: the
		// revision moves with every cluster's writes, and an API server's
		// watch cache only learns of revisions from other prefixes through
		// progress notifications. Without them, a watch at a fresh revision
		// waits and fails with "Too large resource version".
		"--experimental-watch-progress-notify-interval=1s",
	}
}

// waitHealthy polls GET /health until etcd reports healthy, it exits, or ctx
// is done.
func (e *Etcd) waitHealthy(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if exited, _ := e.proc.Exited(); exited {
			return fmt.Errorf("etcd %s before becoming healthy", e.proc.DescribeExit())
		}
		lastErr = etcdHealth(ctx, client, e.Endpoint)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd at %s not healthy: %w (last check: %v)", e.Endpoint, ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

// etcdHealth is nil once GET /health answers {"health":"true"}.
func etcdHealth(ctx context.Context, client *http.Client, endpoint string) error {
	body, err := localproc.Get(ctx, client, endpoint+"/health")
	if err != nil {
		return err
	}
	var h struct {
		Health string `json:"health"`
	}
	if json.Unmarshal(body, &h) != nil || h.Health != "true" {
		return fmt.Errorf("GET /health: %s", body)
	}
	return nil
}

// Kill kills etcd (SIGKILL, as a crash would) and waits until it is gone;
// its data directory and ports stay for Restart.
func (e *Etcd) Kill() error {
	if e == nil || e.proc == nil {
		return errors.New("etcd is not running")
	}
	if err := e.proc.Stop(0); err != nil {
		return fmt.Errorf("killing etcd: %w", err)
	}
	return nil
}

// Restart starts etcd again after Kill, on the same ports and data, and
// waits until it is healthy.
func (e *Etcd) Restart(ctx context.Context) error {
	if e == nil || e.relaunch == nil {
		return errors.New("etcd was never started")
	}
	if exited, _ := e.proc.Exited(); !exited {
		return fmt.Errorf("etcd is still running (pid %d)", e.proc.Pid())
	}
	p, err := e.relaunch()
	if err != nil {
		return err
	}
	e.proc = p
	ctx, cancel := context.WithTimeout(ctx, etcdStartTimeout)
	defer cancel()
	if err := e.waitHealthy(ctx); err != nil {
		return fmt.Errorf("restarting etcd: %w; last lines of %s:\n%s", err, e.LogPath, localproc.TailFile(e.LogPath, 20))
	}
	return nil
}

// Running reports whether etcd's process is alive.
func (e *Etcd) Running() bool {
	if e == nil || e.proc == nil {
		return false
	}
	exited, _ := e.proc.Exited()
	return !exited
}

// Stop stops etcd (SIGTERM, then SIGKILL to its process group after 10 s)
// and waits for it to exit. The data directory is left in place. Stop stops
// only etcd: stop the clusters that use it first.
func (e *Etcd) Stop() error {
	if e == nil || e.proc == nil {
		return nil
	}
	if err := e.proc.Stop(localproc.StopGracePeriod); err != nil {
		return fmt.Errorf("stopping etcd: %w", err)
	}
	return nil
}
