//go:build integration

package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestRemoteAPIServerRestart kills a remote's kube-apiserver and starts it
// again (same port, data and service-account key) while callers keep
// sending requests through the tunnel, whose agent forwards with its
// service account's token (InstallAgentRBAC). A restarting API server
// answers before it has loaded RBAC, refusing the agent's impersonation
// with 403; a caller must see the outage as unavailable (5xx), never as
// 401/403 (which the operator takes for wrong credentials), and requests
// must succeed once the API server is ready.
func TestRemoteAPIServerRestart(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "restarted"})
	c := env.Cluster("restarted")
	ctx := t.Context()
	upstream, err := setUpRemote(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	p := newTestPKI(t, "restarted")
	primary := kube.Cluster("primary")
	clientCAs, err := CABundleFromPEM(primary.CACertPEM)
	if err != nil {
		t.Fatal(err)
	}
	ts := startTestServer(t, p, ServerOptions{ClientCAs: clientCAs,
		TokenReviews: kubernetes.NewForConfigOrDie(primary.Config).AuthenticationV1().TokenReviews()})
	startTestAgent(t, p, "restarted", p.agentCert(t, "restarted", "restarted"), upstream, ts.agentURL)
	waitAgents(t, ts.Server, "restarted", 1)
	caller := (&kubeTunnel{pki: p, server: ts}).userConfig(t, "restarted", "alice")
	caller.Timeout = 5 * time.Second
	client := clientFor(t, caller)
	call := func(ctx context.Context) error {
		if _, err := client.Discovery().RESTClient().Get().AbsPath("/version").DoRaw(ctx); err != nil {
			return fmt.Errorf("GET /version: %w", err)
		}
		if _, err := client.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("GET namespace kube-system: %w", err)
		}
		return nil
	}
	if err := call(ctx); err != nil {
		t.Fatalf("before the restart: %v", err)
	}

	// Callers keep calling through the kill and the restart.
	var (
		mu       sync.Mutex
		refused  []string
		outcomes = map[string]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := call(ctx)
				code := 200
				var se *apierrors.StatusError
				if errors.As(err, &se) {
					code = int(se.ErrStatus.Code)
				} else if err != nil {
					code = 0
				}
				mu.Lock()
				outcomes[fmt.Sprint(code)]++
				if code == http.StatusUnauthorized || code == http.StatusForbidden {
					refused = append(refused, err.Error())
				}
				mu.Unlock()
			}
		}()
	}
	if err := c.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "a request through the tunnel after the restart", func() error { return call(ctx) })
	close(stop)
	wg.Wait()
	t.Logf("outcomes of the callers' calls by status (0: no answer): %v", outcomes)
	if len(refused) > 0 {
		t.Errorf("%d calls were refused (401/403) while the API server restarted; the first: %s", len(refused), refused[0])
	}
}
