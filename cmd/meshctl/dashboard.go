package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// addon is a web UI meshctl can open: the Service that fronts it in the
// mesh's namespace, its port and the path to open.
type addon struct {
	service string
	port    int
	path    string
}

var addons = map[string]addon{
	"grafana":    {service: "grafana", port: 3000, path: "/d/meshfleet-control-plane"},
	"kiali":      {service: "kiali", port: 20001, path: "/kiali"},
	"prometheus": {service: "prometheus", port: 9090, path: "/"},
}

func newDashboardCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Port-forward to Grafana, Kiali or Prometheus in the mesh's namespace and open it",
		Long: `dashboard port-forwards from this machine to a pod of the add-on's Service
(in -n, default istio-system), prints the URL and opens it in a browser
(--browser=false only prints it). It runs until interrupted.`,
	}
	for _, name := range []string{"grafana", "kiali", "prometheus"} {
		cmd.AddCommand(newDashboardAddonCommand(g, name, addons[name]))
	}
	return cmd
}

func newDashboardAddonCommand(g *globals, name string, a addon) *cobra.Command {
	var (
		localPort int
		address   string
		browser   bool
		service   string
	)
	cmd := &cobra.Command{
		Use:   name,
		Short: fmt.Sprintf("Open %s (Service %s, port %d)", name, a.service, a.port),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a.service = service
			return runDashboard(ctx, cmd, g, name, a, address, localPort, browser)
		},
	}
	f := cmd.Flags()
	f.IntVar(&localPort, "port", 0, "local port (default: any free port)")
	f.StringVar(&address, "address", "127.0.0.1", "local address to listen on")
	f.BoolVar(&browser, "browser", true, "open the URL in a browser")
	f.StringVar(&service, "service", a.service, "name of the add-on's Service")
	return cmd
}

func runDashboard(ctx context.Context, cmd *cobra.Command, g *globals, name string, a addon, address string, localPort int, browser bool) error {
	cfg, err := g.config()
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	svc, err := kube.CoreV1().Services(g.namespace).Get(ctx, a.service, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("service %s/%s for %s: %w (install the add-on, or pass -n and --service)", g.namespace, a.service, name, err)
	}
	pod, targetPort, err := podBehind(ctx, kube, svc, a.port)
	if err != nil {
		return err
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return err
	}
	u := kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddresses(spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u),
		[]string{address}, []string{fmt.Sprintf("%d:%d", localPort, targetPort)}, ctx.Done(), ready, cmd.ErrOrStderr(), cmd.ErrOrStderr())
	if err != nil {
		return fmt.Errorf("port-forward to pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- pf.ForwardPorts() }()
	select {
	case err := <-errc:
		return fmt.Errorf("port-forward to pod %s/%s: %w", pod.Namespace, pod.Name, err)
	case <-ready:
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) == 0 {
		return fmt.Errorf("port-forward to pod %s/%s: no local port: %v", pod.Namespace, pod.Name, err)
	}
	link := (&url.URL{Scheme: "http", Host: fmt.Sprintf("%s:%d", address, ports[0].Local), Path: a.path}).String()
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %s   (pod %s/%s; Ctrl-C stops)\n", name, link, pod.Namespace, pod.Name)
	if browser {
		openBrowser(link)
	}
	return <-errc
}

// podBehind picks a running, ready pod of svc and the container port that
// the Service's port forwards to.
func podBehind(ctx context.Context, kube kubernetes.Interface, svc *corev1.Service, port int) (*corev1.Pod, int, error) {
	if len(svc.Spec.Selector) == 0 {
		return nil, 0, fmt.Errorf("service %s/%s has no selector; port-forward to its pods directly with kubectl", svc.Namespace, svc.Name)
	}
	pods, err := kube.CoreV1().Pods(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return nil, 0, err
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if int(svc.Spec.Ports[i].Port) == port || sp == nil {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return nil, 0, fmt.Errorf("service %s/%s has no ports", svc.Namespace, svc.Name)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || !podReady(p) {
			continue
		}
		target := sp.TargetPort.IntValue()
		if target == 0 { // named port
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == sp.TargetPort.String() {
						target = int(cp.ContainerPort)
					}
				}
			}
		}
		if target == 0 {
			target = int(sp.Port)
		}
		return p, target, nil
	}
	return nil, 0, fmt.Errorf("service %s/%s has no running, ready pod (of %d); check kubectl -n %s get pods -l %s",
		svc.Namespace, svc.Name, len(pods.Items), svc.Namespace, labels.SelectorFromSet(svc.Spec.Selector))
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func openBrowser(link string) {
	var c *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		c = exec.Command("open", link)
	case "windows":
		c = exec.Command("rundll32", "url.dll,FileProtocolHandler", link)
	default:
		c = exec.Command("xdg-open", link)
	}
	_ = c.Start() // no browser: the URL is printed
}
