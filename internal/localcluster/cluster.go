package localcluster

import (
	"context"
	"errors"
	"fmt"
	"github.com/meshfleet/meshfleet/internal/localproc"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// DefaultStartTimeout is how long StartCluster waits for kube-apiserver to
// become ready (and, separately, for kube-controller-manager to create the
// default ServiceAccount) when ClusterOptions.StartTimeout is zero.
const DefaultStartTimeout = 90 * time.Second

// ServiceClusterIPRange is the Service IP range given to every cluster. It is
// bookkeeping only: nothing routes to it and no traffic is ever sent there.
const ServiceClusterIPRange = "10.96.0.0/16"

// ControllerManagerControllers are the kube-controller-manager controllers
// started when ClusterOptions.ControllerManager is set and
// ClusterOptions.Controllers is empty: enough for default ServiceAccounts,
// service account token Secrets, EndpointSlices, Deployments/ReplicaSets,
// garbage collection, namespace deletion and aggregated ClusterRoles.
var ControllerManagerControllers = []string{
	"clusterrole-aggregation",
	"serviceaccount",
	"serviceaccount-token",
	"endpointslice",
	"endpointslicemirroring",
	"replicaset",
	"deployment",
	"garbagecollector",
	"namespace",
}

// AggregationControllers run only the controller that fills the aggregated
// ClusterRoles (view, edit, admin): without it they have no rules, and a
// subject bound to "view" may read nothing.
var AggregationControllers = []string{"clusterrole-aggregation"}

// RolloutControllers are the controllers a cluster with FakeNodes needs
// for Deployments to roll out and go away as on a cluster: "deployment"
// and "replicaset" create the ReplicaSets and Pods, "serviceaccount" the
// default ServiceAccounts the Pods may run as, "garbagecollector" deletes
// a deleted Deployment's ReplicaSets and Pods, "namespace" empties and
// removes a deleted Namespace. Without "endpointslice", Services keep only
// the EndpointSlices a test writes itself.
var RolloutControllers = []string{"deployment", "replicaset", "serviceaccount", "garbagecollector", "namespace"}

// auditPolicy logs every request at the Metadata level.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
`

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Name names the cluster. It must be a DNS label (lower-case letters,
	// digits and '-'). It is also the etcd prefix "/<Name>", the kubeconfig
	// context and cluster name, and the service account issuer
	// https://<Name>.local.
	Name string
	// Dir is where certificates, the kubeconfig, the audit log and the
	// process logs go. It is created if needed.
	Dir string
	// ControllerManager also starts kube-controller-manager against the
	// cluster, running Controllers, and waits until they work: the
	// ServiceAccount default/default exists (with "serviceaccount") and the
	// aggregated ClusterRole "view" has rules (with
	// "clusterrole-aggregation").
	ControllerManager bool
	// Controllers are the kube-controller-manager controllers to run;
	// ControllerManagerControllers if empty. AggregationControllers is the
	// cheap choice for a cluster that needs only RBAC as on a real one
	// (the aggregated view, edit and admin roles).
	Controllers []string
	// FakeNodes also starts kube-scheduler and kwok with one fake Node
	// (FakeNodeName), so that with the "deployment" and "replicaset"
	// controllers Deployments create ReplicaSets and Pods, the Pods are
	// scheduled, and kwok makes them Running and Ready as a kubelet would:
	// Deployments roll out and report their replicas as on a cluster. It
	// needs ControllerManager and the Binaries KubeScheduler, Kwok and
	// KwokConfig (`make tools`).
	FakeNodes bool
	// AuditLog logs every request at the Metadata level to <Dir>/audit.log.
	AuditLog bool
	// ExtraAPIServerArgs are added to the kube-apiserver command line, each
	// in the form --flag=value (or --flag for booleans). A flag given here
	// replaces the default value of the same flag instead of being repeated.
	ExtraAPIServerArgs []string
	// StartTimeout bounds the wait for readiness; DefaultStartTimeout if zero.
	StartTimeout time.Duration
}

// Cluster is a running kube-apiserver (and optionally
// kube-controller-manager) backed by a shared Etcd.
type Cluster struct {
	// Name is the cluster name from ClusterOptions.
	Name string
	// Dir holds the cluster's certificates, kubeconfig and logs.
	Dir string
	// URL is the API server address, https://127.0.0.1:<port>.
	URL string
	// Kubeconfig is the path of an admin kubeconfig whose context, cluster
	// and current-context are Name (the user is "<Name>-admin").
	Kubeconfig string
	// Config authenticates as the admin user (client certificate, CN=admin,
	// O=system:masters). It has QPS 50 and Burst 100.
	Config *rest.Config
	// CACertPEM is the PEM-encoded CA that signed the serving certificate
	// and is also the client CA for user certificates.
	CACertPEM []byte
	// AuditLogPath is the audit log file, or "" without ClusterOptions.AuditLog.
	AuditLogPath string
	// APIServerLog is the file kube-apiserver's output goes to.
	APIServerLog string
	// ControllerManagerLog is the file kube-controller-manager's output goes
	// to, or "" without ClusterOptions.ControllerManager.
	ControllerManagerLog string
	// SchedulerLog and KwokLog are the files kube-scheduler's and kwok's
	// output go to, or "" without ClusterOptions.FakeNodes.
	SchedulerLog, KwokLog string

	ca        *certAuthority
	apiserver *localproc.Process
	kcm       *localproc.Process
	scheduler *localproc.Process
	kwok      *localproc.Process
	// relaunch starts kube-apiserver again with the same command line (port,
	// certificates, etcd), for StartAPIServer.
	relaunch func() (*localproc.Process, error)

	stopOnce sync.Once
	stopErr  error
}

// clusterFiles are the paths of the files StartCluster writes into Dir.
type clusterFiles struct {
	caCert, caKey           string
	servingCert, servingKey string
	adminCert, adminKey     string
	saKey                   string
	kubeconfig              string
	auditPolicy, auditLog   string
	apiserverLog, kcmLog    string
	schedulerLog, kwokLog   string
}

func newClusterFiles(dir string) clusterFiles {
	j := func(name string) string { return filepath.Join(dir, name) }
	return clusterFiles{
		caCert: j("ca.crt"), caKey: j("ca.key"),
		servingCert: j("apiserver.crt"), servingKey: j("apiserver.key"),
		adminCert: j("admin.crt"), adminKey: j("admin.key"),
		saKey:        j("sa.key"),
		kubeconfig:   j("kubeconfig"),
		auditPolicy:  j("audit-policy.yaml"),
		auditLog:     j("audit.log"),
		apiserverLog: j("kube-apiserver.log"),
		kcmLog:       j("kube-controller-manager.log"),
		schedulerLog: j("kube-scheduler.log"),
		kwokLog:      j("kwok.log"),
	}
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func (o ClusterOptions) validate() error {
	if !dnsLabel.MatchString(o.Name) {
		return fmt.Errorf("cluster name %q is not a DNS label (lower-case letters, digits and '-', at most 63)", o.Name)
	}
	if o.Dir == "" {
		return fmt.Errorf("cluster %q: no Dir given", o.Name)
	}
	for _, a := range o.ExtraAPIServerArgs {
		if _, err := localproc.FlagName(a); err != nil {
			return fmt.Errorf("cluster %q: ExtraAPIServerArgs: %w", o.Name, err)
		}
	}
	return nil
}

// StartCluster generates certificates and keys in opts.Dir, starts
// kube-apiserver against etcd under the prefix /<opts.Name> on a free port of
// 127.0.0.1, and waits until /readyz succeeds. With opts.ControllerManager it
// then starts kube-controller-manager and waits until the ServiceAccount
// default/default exists. On failure everything started is stopped and the
// error includes the tail of the failing process's log. ctx bounds the
// start-up only; the processes run until Stop.
func StartCluster(ctx context.Context, etcd *Etcd, bins Binaries, opts ClusterOptions) (*Cluster, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("starting cluster: %w", err)
	}
	if etcd == nil || etcd.Endpoint == "" {
		return nil, fmt.Errorf("starting cluster %q: no etcd given", opts.Name)
	}
	if bins.KubeAPIServer == "" {
		return nil, fmt.Errorf("starting cluster %q: no kube-apiserver binary given", opts.Name)
	}
	if opts.ControllerManager && bins.KubeControllerManager == "" {
		return nil, fmt.Errorf("starting cluster %q: no kube-controller-manager binary given", opts.Name)
	}
	if opts.FakeNodes {
		if !opts.ControllerManager {
			return nil, fmt.Errorf("starting cluster %q: FakeNodes needs ControllerManager (its deployment and replicaset controllers create the Pods)", opts.Name)
		}
		if bins.KubeScheduler == "" || bins.Kwok == "" || bins.KwokConfig == "" {
			return nil, fmt.Errorf("starting cluster %q: FakeNodes needs kube-scheduler, kwok and kwok's stages (%s, %s, %s): run `make tools`", opts.Name, EnvKubeScheduler, EnvKwok, EnvKwokConfig)
		}
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting cluster %q: creating %s: %w", opts.Name, opts.Dir, err)
	}
	files := newClusterFiles(opts.Dir)
	c := &Cluster{
		Name:         opts.Name,
		Dir:          opts.Dir,
		Kubeconfig:   files.kubeconfig,
		APIServerLog: files.apiserverLog,
	}
	if opts.AuditLog {
		c.AuditLogPath = files.auditLog
	}
	adminCert, adminKey, err := c.writeCredentials(files, opts.AuditLog)
	if err != nil {
		return nil, fmt.Errorf("starting cluster %q: %w", opts.Name, err)
	}

	if err := c.startAPIServer(ctx, etcd.Endpoint, bins.KubeAPIServer, opts, files, adminCert, adminKey, timeout); err != nil {
		return nil, fmt.Errorf("starting cluster %q: %w", opts.Name, err)
	}
	if err := writeKubeconfig(files.kubeconfig, opts.Name, c.URL, c.CACertPEM, adminCert, adminKey); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("starting cluster %q: %w", opts.Name, err)
	}
	if opts.ControllerManager {
		c.ControllerManagerLog = files.kcmLog
		if err := c.startControllerManager(ctx, bins.KubeControllerManager, files, opts.controllers(), timeout); err != nil {
			_ = c.Stop()
			return nil, fmt.Errorf("starting cluster %q: %w", opts.Name, err)
		}
	}
	if opts.FakeNodes {
		c.SchedulerLog, c.KwokLog = files.schedulerLog, files.kwokLog
		if err := c.startFakeNodes(ctx, bins, files, timeout); err != nil {
			_ = c.Stop()
			return nil, fmt.Errorf("starting cluster %q: %w", opts.Name, err)
		}
	}
	return c, nil
}

// writeCredentials creates the CA, the serving and admin certificates and the
// service account key, writes them (and the audit policy) into the cluster
// directory, and returns the admin certificate and key.
func (c *Cluster) writeCredentials(files clusterFiles, audit bool) (adminCert, adminKey []byte, err error) {
	ca, err := newCA(c.Name + "-ca")
	if err != nil {
		return nil, nil, err
	}
	c.ca = ca
	c.CACertPEM = ca.certPEM
	caKey, err := encodeECKey(ca.key)
	if err != nil {
		return nil, nil, err
	}
	servingCert, servingKey, err := ca.issue(servingSpec())
	if err != nil {
		return nil, nil, err
	}
	adminCert, adminKey, err = ca.issue(clientSpec("admin", []string{"system:masters"}))
	if err != nil {
		return nil, nil, err
	}
	saKey, err := newSigningKey()
	if err != nil {
		return nil, nil, err
	}
	writes := []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{files.caCert, ca.certPEM, 0o644},
		{files.caKey, caKey, 0o600},
		{files.servingCert, servingCert, 0o644},
		{files.servingKey, servingKey, 0o600},
		{files.adminCert, adminCert, 0o644},
		{files.adminKey, adminKey, 0o600},
		{files.saKey, saKey, 0o600},
	}
	if audit {
		writes = append(writes, struct {
			path string
			data []byte
			perm os.FileMode
		}{files.auditPolicy, []byte(auditPolicy), 0o644})
	}
	for _, w := range writes {
		if err := os.WriteFile(w.path, w.data, w.perm); err != nil {
			return nil, nil, fmt.Errorf("writing %s: %w", w.path, err)
		}
	}
	return adminCert, adminKey, nil
}

// apiServerArgs returns the kube-apiserver command line for a cluster.
func apiServerArgs(opts ClusterOptions, files clusterFiles, etcdEndpoint string, port int) []string {
	args := []string{
		"--etcd-servers=" + etcdEndpoint,
		"--etcd-prefix=/" + opts.Name,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--advertise-address=127.0.0.1",
		"--cert-dir=" + opts.Dir,
		"--tls-cert-file=" + files.servingCert,
		"--tls-private-key-file=" + files.servingKey,
		"--client-ca-file=" + files.caCert,
		"--service-account-issuer=https://" + opts.Name + ".local",
		"--service-account-key-file=" + files.saKey,
		"--service-account-signing-key-file=" + files.saKey,
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		// The default "lease" reconciler refuses to start with a loopback
		// advertise address ("cannot use public IP 127.0.0.1 with endpoint
		// reconciler"). Without it the "kubernetes" Service has no
		// endpoints, which nothing here needs.
		"--endpoint-reconciler-type=none",
	}
	if opts.FakeNodes {
		// TaintNodesByCondition would taint the fake Node not-ready at
		// creation; only the node-lifecycle controller (not run here)
		// would take the taint off once kwok reports it Ready.
		args = append(args, "--disable-admission-plugins=TaintNodesByCondition")
	}
	if opts.AuditLog {
		args = append(args,
			"--audit-policy-file="+files.auditPolicy,
			"--audit-log-path="+files.auditLog,
		)
	}
	return localproc.MergeArgs(args, opts.ExtraAPIServerArgs)
}

// controllers returns the kube-controller-manager controllers to run.
func (o ClusterOptions) controllers() []string {
	if len(o.Controllers) > 0 {
		return o.Controllers
	}
	return ControllerManagerControllers
}

// controllerManagerArgs returns the kube-controller-manager command line.
func controllerManagerArgs(files clusterFiles, controllers []string) []string {
	return []string{
		"--kubeconfig=" + files.kubeconfig,
		"--controllers=" + strings.Join(controllers, ","),
		"--service-account-private-key-file=" + files.saKey,
		"--root-ca-file=" + files.caCert,
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
	}
}

// startAPIServer starts kube-apiserver on a free port and waits until it is
// ready, retrying with another port if the chosen one was taken meanwhile.
func (c *Cluster) startAPIServer(ctx context.Context, etcdEndpoint, bin string, opts ClusterOptions, files clusterFiles, adminCert, adminKey []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := localproc.FreePort()
		if err != nil {
			return err
		}
		c.URL = "https://127.0.0.1:" + strconv.Itoa(port)
		c.Config = &rest.Config{
			Host: c.URL,
			TLSClientConfig: rest.TLSClientConfig{
				CAData:   c.CACertPEM,
				CertData: adminCert,
				KeyData:  adminKey,
			},
			QPS:   50,
			Burst: 100,
		}
		args := apiServerArgs(opts, files, etcdEndpoint, port)
		c.relaunch = func() (*localproc.Process, error) {
			return localproc.Start("kube-apiserver", bin, args, nil, files.apiserverLog)
		}
		p, err := c.relaunch()
		if err != nil {
			return err
		}
		c.apiserver = p
		err = waitAPIServerReady(ctx, p, c.Config)
		if err == nil {
			return nil
		}
		_ = p.Stop(0)
		c.apiserver = nil
		tail := localproc.TailFile(files.apiserverLog, 40)
		lastErr = fmt.Errorf("kube-apiserver not ready: %w; last lines of %s:\n%s", err, files.apiserverLog, tail)
		if !localproc.PortInUse(tail) || ctx.Err() != nil {
			break
		}
	}
	return lastErr
}

// waitAPIServerReady polls GET /readyz until it succeeds, the process exits or
// ctx is done.
func waitAPIServerReady(ctx context.Context, p *localproc.Process, cfg *rest.Config) error {
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("building HTTP client: %w", err)
	}
	client.Timeout = 5 * time.Second
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if exited, _ := p.Exited(); exited {
			return fmt.Errorf("kube-apiserver %s", p.DescribeExit())
		}
		lastErr = localproc.GetOK(ctx, client, cfg.Host+"/readyz")
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			// Ask for the list of failing checks to explain the timeout.
			verbose := localproc.GetOK(context.Background(), client, cfg.Host+"/readyz?verbose")
			if verbose == nil {
				verbose = lastErr
			}
			return fmt.Errorf("%w; last check: %v", ctx.Err(), verbose)
		case <-tick.C:
		}
	}
}

// startControllerManager starts kube-controller-manager and waits until its
// controllers have done their first work (controllersWorking).
func (c *Cluster) startControllerManager(ctx context.Context, bin string, files clusterFiles, controllers []string, timeout time.Duration) error {
	p, err := localproc.Start("kube-controller-manager", bin, controllerManagerArgs(files, controllers), nil, files.kcmLog)
	if err != nil {
		return err
	}
	c.kcm = p
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := waitControllers(ctx, p, c.Config, controllers); err != nil {
		return fmt.Errorf("kube-controller-manager not working: %w; last lines of %s:\n%s", err, files.kcmLog, localproc.TailFile(files.kcmLog, 40))
	}
	return nil
}

// controllersWorking reports what the controllers have not done yet: the
// serviceaccount controller creates default/default, the
// clusterrole-aggregation controller fills the rules of "view".
func controllersWorking(ctx context.Context, client kubernetes.Interface, controllers []string) error {
	if slices.Contains(controllers, "serviceaccount") {
		if _, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("ServiceAccount default/default not created: %w", err)
		}
	}
	if slices.Contains(controllers, "clusterrole-aggregation") {
		view, err := client.RbacV1().ClusterRoles().Get(ctx, "view", metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading ClusterRole view: %w", err)
		}
		if len(view.Rules) == 0 {
			return errors.New("the aggregated ClusterRole view has no rules yet")
		}
	}
	return nil
}

func waitControllers(ctx context.Context, p *localproc.Process, cfg *rest.Config, controllers []string) error {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("building client: %w", err)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if exited, _ := p.Exited(); exited {
			return fmt.Errorf("kube-controller-manager %s", p.DescribeExit())
		}
		lastErr = controllersWorking(ctx, client, controllers)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

// writeKubeconfig writes a kubeconfig with the credentials embedded and a
// single context, cluster and current-context named name.
func writeKubeconfig(path, name, url string, caPEM, certPEM, keyPEM []byte) error {
	cfg := clientcmdapi.NewConfig()
	user := name + "-admin"
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	cfg.CurrentContext = name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// UserConfig returns a rest.Config for the cluster that authenticates as
// user, member of groups, with a new client certificate signed by the
// cluster's client CA. Such a user has only the permissions RBAC grants it
// (plus those of system:authenticated).
func (c *Cluster) UserConfig(user string, groups ...string) (*rest.Config, error) {
	if c.ca == nil || c.Config == nil {
		return nil, errors.New("user config: cluster not started")
	}
	certPEM, keyPEM, err := c.ca.issue(clientSpec(user, groups))
	if err != nil {
		return nil, fmt.Errorf("user config for %q on cluster %q: %w", user, c.Name, err)
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.TLSClientConfig = rest.TLSClientConfig{
		CAData:   c.CACertPEM,
		CertData: certPEM,
		KeyData:  keyPEM,
	}
	return cfg, nil
}

// KillAPIServer kills kube-apiserver (SIGKILL, as a crash or an evicted pod
// would end it) and waits until it is gone. The cluster's data, certificates
// and port stay for StartAPIServer.
func (c *Cluster) KillAPIServer() error {
	if c.apiserver == nil {
		return fmt.Errorf("cluster %q: kube-apiserver is not running", c.Name)
	}
	if err := c.apiserver.Stop(0); err != nil {
		return fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver again after KillAPIServer, with the
// same command line (same port, so every client's URL stays valid), and
// waits until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if c.relaunch == nil {
		return fmt.Errorf("cluster %q: kube-apiserver was never started", c.Name)
	}
	if exited, _ := c.apiserver.Exited(); !exited {
		return fmt.Errorf("cluster %q: kube-apiserver is still running (pid %d)", c.Name, c.apiserver.Pid())
	}
	p, err := c.relaunch()
	if err != nil {
		return fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	c.apiserver = p
	ctx, cancel := context.WithTimeout(ctx, DefaultStartTimeout)
	defer cancel()
	if err := waitAPIServerReady(ctx, p, c.Config); err != nil {
		return fmt.Errorf("cluster %q: kube-apiserver not ready after restart: %w; last lines of %s:\n%s", c.Name, err, c.APIServerLog, localproc.TailFile(c.APIServerLog, 20))
	}
	return nil
}

// APIServerRunning reports whether kube-apiserver's process is alive.
func (c *Cluster) APIServerRunning() bool {
	if c.apiserver == nil {
		return false
	}
	exited, _ := c.apiserver.Exited()
	return !exited
}

// Stop stops kube-controller-manager and kube-apiserver (SIGTERM, then
// SIGKILL to each process group after 10 s) and waits for them to exit. It
// leaves etcd and the cluster's data in it alone. Stop is safe to call more
// than once.
func (c *Cluster) Stop() error {
	if c == nil {
		return nil
	}
	c.stopOnce.Do(func() {
		var errs []error
		for _, p := range []*localproc.Process{c.kwok, c.scheduler} {
			if p != nil {
				if err := p.Stop(localproc.StopGracePeriod); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if c.kcm != nil {
			if err := c.kcm.Stop(localproc.StopGracePeriod); err != nil {
				errs = append(errs, err)
			}
		}
		if c.apiserver != nil {
			if err := c.apiserver.Stop(localproc.StopGracePeriod); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			c.stopErr = fmt.Errorf("stopping cluster %q: %w", c.Name, err)
		}
	})
	return c.stopErr
}
