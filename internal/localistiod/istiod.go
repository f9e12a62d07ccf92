package localistiod

import (
	"context"
	"errors"
	"fmt"
	"github.com/meshfleet/meshfleet/internal/localproc"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultStartTimeout bounds the wait for istiod to become ready when
// Options.StartTimeout is zero.
const DefaultStartTimeout = 90 * time.Second

// stopGracePeriod is how long Stop waits after SIGTERM before SIGKILL.
const stopGracePeriod = 5 * time.Second

// Options configures Start.
type Options struct {
	// Kubeconfig is the kubeconfig istiod watches (required). The cluster
	// must already hold Istio's CRDs (see InstallCRDs).
	Kubeconfig string
	// Dir receives the mesh config file (mesh.yaml) and istiod.log. It is
	// created if needed (required).
	Dir string
	// MeshConfig is the MeshConfig as YAML; empty means Istio's defaults.
	MeshConfig string
	// ClusterID is istiod's --clusterID; "Kubernetes" if empty.
	ClusterID string
	// Namespace is istiod's own namespace (POD_NAMESPACE); istio-system if
	// empty.
	Namespace string
	// Env holds extra KEY=VALUE environment variables; they override the
	// defaults (DefaultEnv) with the same key.
	Env []string
	// Args holds extra --flag=value arguments; a flag given here replaces
	// the default of the same name.
	Args []string
	// Binary is pilot-discovery's path; DefaultBinary() if empty.
	Binary string
	// StartTimeout bounds the wait for readiness; DefaultStartTimeout if 0.
	StartTimeout time.Duration
}

// Istiod is a running istiod process.
type Istiod struct {
	// GRPCAddr is the plain-text xDS address, 127.0.0.1:<port>.
	GRPCAddr string
	// HTTPAddr serves /ready and the /debug endpoints.
	HTTPAddr string
	// MonitoringAddr serves Prometheus metrics on /metrics.
	MonitoringAddr string
	// MeshConfigPath is the mesh config file istiod reads (and watches).
	MeshConfigPath string
	// LogPath is the file istiod's output goes to.
	LogPath string

	proc *localproc.Process
	// relaunch starts istiod again with the same command line and ports,
	// for Restart; timeout bounds its wait for readiness.
	relaunch func() (*localproc.Process, error)
	timeout  time.Duration
	stopOnce sync.Once
	stopErr  error
}

// Start writes the mesh config, starts pilot-discovery with its listeners on
// free ports of 127.0.0.1 and waits until GET /ready on HTTPAddr succeeds.
// On failure the process is stopped and the error holds the end of its log.
// ctx bounds the start-up only; istiod runs until Stop.
func Start(ctx context.Context, opts Options) (*Istiod, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("starting istiod: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting istiod: creating %s: %w", opts.Dir, err)
	}
	d := &Istiod{
		MeshConfigPath: filepath.Join(opts.Dir, "mesh.yaml"),
		LogPath:        filepath.Join(opts.Dir, "istiod.log"),
	}
	if err := os.WriteFile(d.MeshConfigPath, []byte(opts.MeshConfig), 0o644); err != nil {
		return nil, fmt.Errorf("starting istiod: writing mesh config: %w", err)
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, fmt.Errorf("starting istiod: %w", err)
	}
	d.GRPCAddr, d.HTTPAddr, d.MonitoringAddr = ports[0], ports[1], ports[2]
	args := localproc.MergeArgs(d.args(opts), opts.Args)
	env := mergeEnv(DefaultEnv(opts.ClusterID, opts.Namespace), opts.Env)
	d.relaunch = func() (*localproc.Process, error) {
		return localproc.Start("istiod", opts.Binary, args, env, d.LogPath)
	}
	d.timeout = opts.StartTimeout
	d.proc, err = d.relaunch()
	if err != nil {
		return nil, fmt.Errorf("starting istiod: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := d.waitReady(ctx); err != nil {
		_ = d.proc.Stop(0)
		return nil, fmt.Errorf("starting istiod: %w; last lines of %s:\n%s", err, d.LogPath, localproc.TailFile(d.LogPath, 40))
	}
	return d, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Kubeconfig == "" {
		return o, errors.New("no Kubeconfig given")
	}
	if o.Dir == "" {
		return o, errors.New("no Dir given")
	}
	for _, a := range o.Args {
		if _, err := localproc.FlagName(a); err != nil {
			return o, fmt.Errorf("option Args: %w", err)
		}
	}
	for _, e := range o.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return o, fmt.Errorf("option Env: %q is not of the form KEY=VALUE", e)
		}
	}
	if o.ClusterID == "" {
		o.ClusterID = "Kubernetes"
	}
	if o.Namespace == "" {
		o.Namespace = "istio-system"
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.Binary == "" {
		b, err := DefaultBinary()
		if err != nil {
			return o, err
		}
		o.Binary = b
	}
	return o, nil
}

// args returns pilot-discovery's default command line.
func (d *Istiod) args(opts Options) []string {
	return []string{
		"discovery",
		"--kubeconfig=" + opts.Kubeconfig,
		"--meshConfig=" + d.MeshConfigPath,
		// No meshNetworks file: a missing one is not an error.
		"--networksConfig=" + filepath.Join(opts.Dir, "mesh-networks.yaml"),
		"--clusterID=" + opts.ClusterID,
		"--namespace=" + opts.Namespace,
		"--registries=Kubernetes",
		"--domain=cluster.local",
		"--grpcAddr=" + d.GRPCAddr,
		"--httpAddr=" + d.HTTPAddr,
		"--monitoringAddr=" + d.MonitoringAddr,
		// No webhook HTTPS server (webhooks would be served on httpAddr,
		// but injection is off) and no mTLS xDS port.
		"--httpsAddr=",
		"--secureGRPCAddr=",
		// ControlZ would take the fixed port 9876 on all interfaces.
		"--ctrlz_address=127.0.0.1",
		"--ctrlz_port=0",
		// Stop quickly: nothing here drains.
		"--shutdownDuration=1s",
		"--log_output_level=default:info",
	}
}

// DefaultEnv returns the environment Start gives istiod: its pod identity
// and the switches that turn off what needs a real cluster network.
func DefaultEnv(clusterID, namespace string) []string {
	return []string{
		"POD_NAME=istiod-" + strings.ToLower(clusterID),
		"POD_NAMESPACE=" + namespace,
		"REVISION=default",
		"INJECT_ENABLED=false",
		"ENABLE_CA_SERVER=false",
		"VALIDATION_WEBHOOK_CONFIG_NAME=",
		"PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER=false",
	}
}

// waitReady polls GET /ready until it returns 200, istiod exits or ctx ends.
func (d *Istiod) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + d.HTTPAddr + "/ready"
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if done, _ := d.proc.Exited(); done {
			return fmt.Errorf("istiod %s before becoming ready", d.proc.DescribeExit())
		}
		lastErr = localproc.GetOK(ctx, client, url)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("istiod not ready: %w (last check: %v)", ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct 127.0.0.1:<port> addresses that were free a
// moment ago.
func freePorts(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// Kill kills istiod (SIGKILL, as a crash or an evicted pod would end it)
// and waits until it is gone. Its ports stay reserved for Restart: xDS
// clients reconnect to the same address, as they would through a Service.
func (d *Istiod) Kill() error {
	if d == nil || d.proc == nil {
		return errors.New("istiod is not running")
	}
	if err := d.proc.Stop(0); err != nil {
		return fmt.Errorf("killing istiod: %w", err)
	}
	return nil
}

// Restart starts istiod again after Kill, with the same command line and
// ports, and waits until it is ready. If istiod exits or stays unready, the
// error says so and holds the end of its log; the process (if alive) is left
// running, as a crash-looping pod would be.
func (d *Istiod) Restart(ctx context.Context) error {
	if d == nil || d.relaunch == nil {
		return errors.New("istiod was never started")
	}
	if d.Running() {
		return fmt.Errorf("istiod is still running (pid %d)", d.proc.Pid())
	}
	p, err := d.relaunch()
	if err != nil {
		return fmt.Errorf("restarting istiod: %w", err)
	}
	d.proc = p
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if err := d.waitReady(ctx); err != nil {
		return fmt.Errorf("restarting istiod: %w; last lines of %s:\n%s", err, d.LogPath, localproc.TailFile(d.LogPath, 20))
	}
	return nil
}

// Running reports whether istiod's process is alive.
func (d *Istiod) Running() bool {
	if d == nil || d.proc == nil {
		return false
	}
	exited, _ := d.proc.Exited()
	return !exited
}

// Stop stops istiod (SIGTERM, then SIGKILL to its process group after 5 s)
// and waits for it to exit. It is safe to call more than once.
func (d *Istiod) Stop() error {
	if d == nil || d.proc == nil {
		return nil
	}
	d.stopOnce.Do(func() {
		if err := d.proc.Stop(stopGracePeriod); err != nil {
			d.stopErr = fmt.Errorf("stopping istiod: %w", err)
		}
	})
	return d.stopErr
}
