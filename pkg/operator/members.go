package operator

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// MemberReady is 1 for each member cluster of the mesh that is Ready and,
// for a remote, reachable now (Connected): a remote's Ready is its last
// known state while it is unreachable (decision 20), which this gauge does
// not count as ready.
var MemberReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "meshfleet_member_ready",
	Help: "1 while the member cluster is Ready (and, for a remote, reachable), else 0; one series per cluster of the mesh.",
}, []string{"cluster", "role"})

// memberReadyInterval is how often the gauge is recomputed from the cache.
const memberReadyInterval = 5 * time.Second

// memberReadiness keeps MemberReady in step with the Istio and RemoteIstio
// resources in the manager's cache.
func memberReadiness(c client.Reader) manager.RunnableFunc {
	return func(ctx context.Context) error {
		t := time.NewTicker(memberReadyInterval)
		defer t.Stop()
		seen := map[[2]string]bool{}
		for {
			now := map[[2]string]float64{}
			var istios v1beta1.IstioList
			if err := c.List(ctx, &istios); err == nil {
				for _, ist := range istios.Items {
					now[[2]string{clusterName(ist.Status.ClusterName, ist.Name), "primary"}] = boolGauge(
						meta.IsStatusConditionTrue(ist.Status.Conditions, v1beta1.ConditionReady))
				}
			}
			var remotes v1beta1.RemoteIstioList
			if err := c.List(ctx, &remotes); err == nil {
				for _, ri := range remotes.Items {
					now[[2]string{clusterName(ri.Status.ClusterName, ri.Name), "remote"}] = boolGauge(
						meta.IsStatusConditionTrue(ri.Status.Conditions, v1beta1.ConditionReady) &&
							meta.IsStatusConditionTrue(ri.Status.Conditions, v1beta1.ConditionConnected))
				}
			}
			for k, v := range now {
				MemberReady.WithLabelValues(k[0], k[1]).Set(v)
				seen[k] = true
			}
			for k := range seen {
				if _, ok := now[k]; !ok {
					MemberReady.DeleteLabelValues(k[0], k[1])
					delete(seen, k)
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}
}

func clusterName(status, name string) string {
	if status != "" {
		return status
	}
	return name
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
