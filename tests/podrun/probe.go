package podrun

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Ready runs the containers' HTTP readiness probes as the kubelet would
// (HTTPS without verifying the certificate, 200–399 is ready) at the local
// ports of Options.Ports, after checking that every container runs. A
// container without a readiness probe is ready while it runs.
func (p *Pod) Ready(ctx context.Context) error {
	if err := p.Running(); err != nil {
		return err
	}
	for _, c := range p.containers {
		if c.ReadinessProbe == nil {
			continue
		}
		h := c.ReadinessProbe.HTTPGet
		if h == nil {
			return fmt.Errorf("pod %s container %s: only httpGet readiness probes are run by podrun", p.Name, c.Name)
		}
		name := h.Port.StrVal
		if h.Port.Type == intstr.Int {
			for _, cp := range c.Ports {
				if cp.ContainerPort == h.Port.IntVal {
					name = cp.Name
				}
			}
		}
		port := p.ports[name]
		if port == 0 {
			return fmt.Errorf("pod %s container %s: the readiness probe's port %s has no local port (Options.Ports)", p.Name, c.Name, h.Port.String())
		}
		scheme := "http"
		if h.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the kubelet does not verify probes either
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, port, h.Path), nil)
		if err != nil {
			return err
		}
		resp, err := cl.Do(req)
		if err != nil {
			return fmt.Errorf("pod %s container %s readiness: %w", p.Name, c.Name, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("pod %s container %s readiness: %s %s", p.Name, c.Name, h.Path, resp.Status)
		}
	}
	return nil
}
