// Package podrun runs what a Deployment manifest would run in a pod as local
// processes against a real kube-apiserver: each container's command and args
// with the binary built from the repository standing in for the image, the
// container's env (fieldRef, secretKeyRef and configMapKeyRef resolved), the
// pod's Secret, ConfigMap, projected and emptyDir volumes materialised as
// files under a temporary root with every argument and env value that points
// into a mount rewritten to its local path, and the service account's
// credentials: a token from the TokenRequest API for the pod's service
// account (with the audience and lifetime a projected token asks for), the
// cluster CA and KUBERNETES_SERVICE_HOST/PORT. client-go's in-cluster
// loader reads fixed paths under /var/run/secrets, so the same credentials
// reach the process as a kubeconfig (KUBECONFIG) naming the API server, the
// CA file and the token file: what rest.InClusterConfig would build.
//
// The one deviation from the manifest is Options.Args, appended flags that
// move listening ports off the ones every replica would share on one host.
// What a cluster does around the pod is played too: the Pod object
// (Options.Register), a Service (Runner.Front forwards to the registered
// pods its selector matches), the kubelet's readiness probe (Pod.Ready)
// and the Deployment controller's status (Runner.SetAvailable).
package podrun

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshfleet/meshfleet/internal/localproc"
)

// ServiceAccountDir is where a pod finds its service account's token, CA
// and namespace.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Runner starts pods of one cluster.
type Runner struct {
	// Admin reads the pods' Secrets and ConfigMaps and requests tokens.
	Admin *rest.Config
	// APIServer is the API server's URL, https://host:port.
	APIServer string
	// CACertPEM is the cluster CA (the pod's ca.crt).
	CACertPEM []byte
	// Images maps an image (or any image when the key is "*") to the local
	// binary that stands in for it.
	Images map[string]string

	mu sync.Mutex
	// ports are the local ports of the started pods' named container
	// ports, by namespace/pod, for Front.
	ports map[string]map[string]int
}

// Options adjust one pod.
type Options struct {
	// Args are appended to a container's args by container name (flags
	// given there replace the manifest's of the same name): ports.
	Args map[string][]string
	// PodName is the pod's name (metadata.name); default <deployment>-podrun.
	PodName string
	// Ports are the local ports the container ports (by name) listen on,
	// as moved by Args: a Front forwards a Service's targetPort there.
	Ports map[string]int
	// Register creates the Pod object (the template's labels and spec,
	// bound to a node that does not run it) for as long as the process
	// runs, as the ReplicaSet controller would: for a process that reads or
	// labels its own Pod, and for a Front to select it by labels.
	Register bool
}

// Pod is a started pod.
type Pod struct {
	Name string
	// Root is the pod's local root: mounts under Root/volumes, logs Root/*.log.
	Root string
	// Procs are the containers' processes by container name.
	Procs map[string]*localproc.Process
	// Logs are the containers' log files by container name.
	Logs map[string]string
	// Argv are the command lines the containers run, after path rewriting.
	Argv map[string][]string

	containers []corev1.Container
	ports      map[string]int
}

// Run starts one replica of d's pod and stops it when the test ends.
func (r *Runner) Run(t testing.TB, d *appsv1.Deployment, o Options) *Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := r.start(ctx, t.TempDir(), d, o)
	if err != nil {
		t.Fatalf("podrun %s/%s: %v", d.Namespace, d.Name, err)
	}
	r.mu.Lock()
	if r.ports == nil {
		r.ports = map[string]map[string]int{}
	}
	r.ports[d.Namespace+"/"+p.Name] = o.Ports
	r.mu.Unlock()
	if o.Register {
		if err := r.register(ctx, d, p.Name); err != nil {
			t.Fatalf("podrun %s/%s: %v", d.Namespace, d.Name, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			kube, err := kubernetes.NewForConfig(r.Admin)
			if err == nil {
				err = kube.CoreV1().Pods(d.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
			}
			if err != nil {
				t.Logf("podrun: deleting Pod %s/%s: %v", d.Namespace, p.Name, err)
			}
		})
	}
	t.Cleanup(func() {
		for name, proc := range p.Procs {
			if err := proc.Stop(10 * time.Second); err != nil {
				t.Logf("podrun %s container %s: %v", p.Name, name, err)
			}
			if t.Failed() {
				t.Logf("podrun %s container %s (%s):\n%s", p.Name, name, proc.DescribeExit(), localproc.TailFile(p.Logs[name], 40))
			}
		}
	})
	return p
}

// Running returns an error naming the first container that has exited,
// with the end of its log: call it in polling loops so that a crashed pod
// fails the test at once instead of at the wait's timeout.
func (p *Pod) Running() error {
	for name, proc := range p.Procs {
		if exited, _ := proc.Exited(); exited {
			return fmt.Errorf("pod %s container %s %s:\n%s", p.Name, name, proc.DescribeExit(), localproc.TailFile(p.Logs[name], 20))
		}
	}
	return nil
}

func (r *Runner) start(ctx context.Context, root string, d *appsv1.Deployment, o Options) (*Pod, error) {
	kube, err := kubernetes.NewForConfig(r.Admin)
	if err != nil {
		return nil, err
	}
	spec := d.Spec.Template.Spec
	ns := d.Namespace
	pod := &Pod{Name: o.PodName, Root: root, Procs: map[string]*localproc.Process{}, Logs: map[string]string{}, Argv: map[string][]string{},
		containers: spec.Containers, ports: o.Ports}
	if pod.Name == "" {
		pod.Name = d.Name + "-podrun"
	}
	sa := spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	token := func(audience string, seconds *int64) ([]byte, error) {
		tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: seconds}}
		if audience != "" {
			tr.Spec.Audiences = []string{audience}
		}
		got, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, tr, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("token for service account %s/%s (audience %q): %w", ns, sa, audience, err)
		}
		return []byte(got.Status.Token), nil
	}

	// Volumes.
	volDir := map[string]string{}
	for _, v := range spec.Volumes {
		dir := filepath.Join(root, "volumes", v.Name)
		volDir[v.Name] = dir
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		files, err := r.volumeFiles(ctx, kube, ns, v, token)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		for rel, data := range files {
			p := filepath.Join(dir, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return nil, err
			}
			if err := os.WriteFile(p, data, 0o600); err != nil {
				return nil, err
			}
		}
	}
	// The service account volume kubelet adds.
	mounts := map[string]string{}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		dir := filepath.Join(root, "volumes", "kube-api-access")
		tok, err := token("", nil)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		for name, data := range map[string][]byte{"token": tok, "ca.crt": r.CACertPEM, "namespace": []byte(ns)} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				return nil, err
			}
		}
		mounts[ServiceAccountDir] = dir
	}

	u, err := url.Parse(r.APIServer)
	if err != nil {
		return nil, err
	}
	for _, c := range spec.Containers {
		cm := map[string]string{}
		for k, v := range mounts {
			cm[k] = v
		}
		for _, m := range c.VolumeMounts {
			dir, ok := volDir[m.Name]
			if !ok {
				return nil, fmt.Errorf("container %s mounts volume %s, which the pod does not have", c.Name, m.Name)
			}
			cm[m.MountPath] = filepath.Join(dir, filepath.FromSlash(m.SubPath))
		}
		rewrite := rewriter(cm)
		env := []string{"HOME=" + root, "PATH=/usr/local/bin:/usr/bin:/bin",
			"KUBERNETES_SERVICE_HOST=" + u.Hostname(), "KUBERNETES_SERVICE_PORT=" + u.Port()}
		if sadir, ok := cm[ServiceAccountDir]; ok {
			kc, err := inClusterKubeconfig(root, c.Name, r.APIServer, sadir)
			if err != nil {
				return nil, err
			}
			env = append(env, "KUBECONFIG="+kc)
		}
		for _, e := range c.Env {
			val, err := r.envValue(ctx, kube, ns, pod.Name, e)
			if err != nil {
				return nil, fmt.Errorf("container %s env %s: %w", c.Name, e.Name, err)
			}
			env = append(env, e.Name+"="+rewrite(val))
		}
		bin := r.Images[c.Image]
		if bin == "" {
			bin = r.Images["*"]
		}
		if bin == "" {
			return nil, fmt.Errorf("container %s: no local binary for image %s", c.Name, c.Image)
		}
		args := append([]string{}, c.Args...)
		if len(c.Command) > 1 {
			args = append(append([]string{}, c.Command[1:]...), args...)
		}
		for i := range args {
			args[i] = rewrite(args[i])
		}
		args = localproc.MergeArgs(args, o.Args[c.Name])
		log := filepath.Join(root, c.Name+".log")
		proc, err := localproc.Start(pod.Name+"/"+c.Name, bin, args, env, log)
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", c.Name, err)
		}
		pod.Procs[c.Name], pod.Logs[c.Name], pod.Argv[c.Name] = proc, log, append([]string{bin}, args...)
	}
	return pod, nil
}

// rewriter replaces a mount path at the start of a value, or after '=' or
// ',' in it, by its local directory (longest mount path first).
func rewriter(mounts map[string]string) func(string) string {
	return func(s string) string {
		best := ""
		for m := range mounts {
			if len(m) > len(best) && strings.Contains(s, m) {
				best = m
			}
		}
		if best == "" {
			return s
		}
		var out strings.Builder
		for {
			i := strings.Index(s, best)
			if i < 0 {
				out.WriteString(s)
				return out.String()
			}
			rest := s[i+len(best):]
			boundaryBefore := i == 0 || strings.ContainsRune("=,:", rune(s[i-1]))
			boundaryAfter := rest == "" || rest[0] == '/' || rest[0] == ','
			out.WriteString(s[:i])
			if boundaryBefore && boundaryAfter {
				out.WriteString(mounts[best])
			} else {
				out.WriteString(best)
			}
			s = rest
		}
	}
}

func (r *Runner) volumeFiles(ctx context.Context, kube kubernetes.Interface, ns string, v corev1.Volume,
	token func(string, *int64) ([]byte, error)) (map[string][]byte, error) {
	out := map[string][]byte{}
	fromData := func(kind, name string, data map[string][]byte, items []corev1.KeyToPath, optional *bool, err error) error {
		if err != nil {
			if optional != nil && *optional {
				return nil
			}
			return fmt.Errorf("%s %s/%s: %w", kind, ns, name, err)
		}
		if len(items) == 0 {
			for k, d := range data {
				out[k] = d
			}
			return nil
		}
		for _, it := range items {
			d, ok := data[it.Key]
			if !ok {
				return fmt.Errorf("%s %s/%s has no key %s", kind, ns, name, it.Key)
			}
			out[it.Path] = d
		}
		return nil
	}
	secret := func(name string, items []corev1.KeyToPath, optional *bool) error {
		s, err := kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		var data map[string][]byte
		if err == nil {
			data = s.Data
		}
		return fromData("Secret", name, data, items, optional, err)
	}
	configMap := func(name string, items []corev1.KeyToPath, optional *bool) error {
		c, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		data := map[string][]byte{}
		if err == nil {
			for k, v := range c.Data {
				data[k] = []byte(v)
			}
			for k, v := range c.BinaryData {
				data[k] = v
			}
		}
		return fromData("ConfigMap", name, data, items, optional, err)
	}
	switch {
	case v.Secret != nil:
		return out, secret(v.Secret.SecretName, v.Secret.Items, v.Secret.Optional)
	case v.ConfigMap != nil:
		return out, configMap(v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional)
	case v.EmptyDir != nil:
		return out, nil
	case v.Projected != nil:
		for _, s := range v.Projected.Sources {
			switch {
			case s.ServiceAccountToken != nil:
				tok, err := token(s.ServiceAccountToken.Audience, s.ServiceAccountToken.ExpirationSeconds)
				if err != nil {
					return nil, err
				}
				out[s.ServiceAccountToken.Path] = tok
			case s.Secret != nil:
				if err := secret(s.Secret.Name, s.Secret.Items, s.Secret.Optional); err != nil {
					return nil, err
				}
			case s.ConfigMap != nil:
				if err := configMap(s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional); err != nil {
					return nil, err
				}
			default:
				return nil, fmt.Errorf("projected source %+v is not supported by podrun", s)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("volume type of %s is not supported by podrun (Secret, ConfigMap, projected, emptyDir are)", v.Name)
}

func (r *Runner) envValue(ctx context.Context, kube kubernetes.Interface, ns, podName string, e corev1.EnvVar) (string, error) {
	if e.ValueFrom == nil {
		return e.Value, nil
	}
	switch f := e.ValueFrom; {
	case f.FieldRef != nil:
		switch f.FieldRef.FieldPath {
		case "metadata.name":
			return podName, nil
		case "metadata.namespace":
			return ns, nil
		case "spec.nodeName":
			return "podrun-node", nil
		case "status.podIP", "status.hostIP":
			return "127.0.0.1", nil
		}
		return "", fmt.Errorf("fieldRef %s is not supported by podrun", f.FieldRef.FieldPath)
	case f.SecretKeyRef != nil:
		s, err := kube.CoreV1().Secrets(ns).Get(ctx, f.SecretKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return string(s.Data[f.SecretKeyRef.Key]), nil
	case f.ConfigMapKeyRef != nil:
		c, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, f.ConfigMapKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return c.Data[f.ConfigMapKeyRef.Key], nil
	}
	return "", fmt.Errorf("valueFrom %+v is not supported by podrun", e.ValueFrom)
}

// inClusterKubeconfig writes what rest.InClusterConfig builds from the
// service account directory: the server, its CA file and the token file
// (re-read by client-go as it changes).
func inClusterKubeconfig(root, container, server, saDir string) (string, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["in-cluster"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: filepath.Join(saDir, "ca.crt")}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{TokenFile: filepath.Join(saDir, "token")}
	cfg.Contexts["in-cluster"] = &clientcmdapi.Context{Cluster: "in-cluster", AuthInfo: "sa"}
	cfg.CurrentContext = "in-cluster"
	p := filepath.Join(root, container+".kubeconfig")
	return p, clientcmd.WriteToFile(*cfg, p)
}
