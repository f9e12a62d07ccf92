package istio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tagrollout"
)

// istiodMonitoringPort serves istiod's /debug endpoints (and metrics).
const istiodMonitoringPort = 15014

// ackQueryTimeout bounds one reading of an istiod's sync state.
const ackQueryTimeout = 5 * time.Second

// IstiodDebug says how the operator reaches each istiod revision's debug
// endpoints (decision 60).
type IstiodDebug struct {
	// Addresses, when it has the revision, is the host:port of that
	// revision's monitoring port: an istiod run as a local process (tests,
	// the sandbox). Otherwise every ready endpoint of the Service
	// istiod-<rev> is asked on port 15014, straight from the operator's
	// Pod: each istiod replica knows only the proxies connected to it.
	Addresses map[string]string
	// TokenFile, when set, holds a token (a projected ServiceAccount token
	// for the audience istio-ca) sent as a bearer token: istiod's debug
	// endpoints answer only loopback callers and callers it authenticates.
	TokenFile string
	// HTTP is the client; http.DefaultClient if nil.
	HTTP *http.Client
}

// Acks reads revision rev's istiod sync state (every replica's) and judges
// the proxies of clusters; c lists the Service's endpoints. A sync state
// that cannot be read is returned as a problem (the batch waits, and fails
// at the timeout with it), never as an error.
func (d IstiodDebug) Acks(ctx context.Context, c client.Reader, namespace, rev string, clusters []string) (tagrollout.Acks, string) {
	ctx, cancel := context.WithTimeout(ctx, ackQueryTimeout)
	defer cancel()
	addrs, err := d.addrs(ctx, c, namespace, rev)
	if err != nil {
		return tagrollout.Acks{}, err.Error()
	}
	if len(addrs) == 0 {
		return tagrollout.Acks{}, fmt.Sprintf("Service %s/istiod-%s has no ready endpoint", namespace, rev)
	}
	var all []tagrollout.ProxySync
	for _, a := range addrs {
		ps, err := d.readSyncz(ctx, a)
		if err != nil {
			return tagrollout.Acks{}, err.Error()
		}
		all = append(all, ps...)
	}
	return tagrollout.ObserveAcks(all, clusters), ""
}

// addrs lists the host:port of each replica of revision rev's istiod
// monitoring port.
func (d IstiodDebug) addrs(ctx context.Context, c client.Reader, namespace, rev string) ([]string, error) {
	if a, ok := d.Addresses[rev]; ok {
		return []string{a}, nil
	}
	svc := render.IstiodName(&render.ControlPlane{Revision: rev})
	var slices discoveryv1.EndpointSliceList
	if err := c.List(ctx, &slices, client.InNamespace(namespace), client.MatchingLabels{discoveryv1.LabelServiceName: svc}); err != nil {
		return nil, fmt.Errorf("list the endpoints of Service %s/%s to read istiod's sync state: %w", namespace, svc, err)
	}
	var out []string
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			if len(e.Addresses) > 0 {
				out = append(out, net.JoinHostPort(e.Addresses[0], strconv.Itoa(istiodMonitoringPort)))
			}
		}
	}
	return out, nil
}

// readSyncz reads one istiod's /debug/syncz.
func (d IstiodDebug) readSyncz(ctx context.Context, addr string) ([]tagrollout.ProxySync, error) {
	url := "http://" + addr + "/debug/syncz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if f := d.TokenFile; f != "" {
		tok, err := os.ReadFile(f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Not mounted (a local istiod answers loopback callers); istiod's
			// refusal below says what is missing.
		case err != nil:
			return nil, fmt.Errorf("read the token for istiod's debug endpoints: %w", err)
		default:
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		}
	}
	hc := d.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("istiod's sync state at %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("istiod's sync state at %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return nil, fmt.Errorf("istiod's sync state at %s: HTTP %d: istiod refused the operator; mount it a token for the audience istio-ca (the chart's meshfleet-istiod-debug-token) and allow its namespace in istiod's DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES (meshfleet renders %s)",
			url, resp.StatusCode, render.TunnelServerNamespace)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("istiod's sync state at %s: HTTP %d %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	ps, err := tagrollout.ParseSyncz(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return ps, nil
}
