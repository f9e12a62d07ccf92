package istio

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// TestXDSGateWiring: with gate.xds, a gating batch's step reads the new
// revision's istiod sync state; a NACK from a proxy of the batch's cluster
// moves the batch back at once with the proxy and its error (istiod is not
// even ready yet), one from another cluster does not count; without
// gate.xds the sync state is not read. A batch whose remote has not
// applied the move waits for it.
func TestXDSGateWiring(t *testing.T) {
	syncz := `[{"cluster_id":"west","proxy":"client-0.apps","resources":{"type.googleapis.com/envoy.config.cluster.v3.Cluster":{"sent":"n2","acked":"n1","lastError":"unexpected lbPolicy MAGLEV"}}},
	            {"cluster_id":"east","proxy":"client-1.apps","resources":{"type.googleapis.com/envoy.config.cluster.v3.Cluster":{"sent":"n2","acked":"n1","lastError":"other"}}}]`
	reads := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/debug/syncz" {
			http.NotFound(w, req)
			return
		}
		reads++
		_, _ = w.Write([]byte(syncz))
	}))
	defer srv.Close()

	step := func(xds *v1beta1.RolloutXDSGate, applied string) *v1beta1.RolloutStatus {
		t.Helper()
		c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(&v1beta1.RemoteIstio{
			ObjectMeta: metav1.ObjectMeta{Name: "west", Namespace: "istio-system"},
			Status:     v1beta1.RemoteIstioStatus{DefaultTagRevision: applied}}).WithStatusSubresource(&v1beta1.RemoteIstio{}).Build()
		r := &Reconciler{Client: c, APIReader: c, Events: events.NewFakeRecorder(10),
			IstiodDebug: IstiodDebug{Addresses: map[string]string{"1-30-3": strings.TrimPrefix(srv.URL, "http://")}}}
		now := time.Now()
		ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}}
		ist.Status.Rollout = &v1beta1.RolloutStatus{From: "1-29-6", To: "1-30-3", Phase: rolloutProgressing, Batches: []v1beta1.RolloutBatchStatus{
			{Name: "canary", Clusters: []string{"west"}, Phase: "Gating", MovedAt: &metav1.Time{Time: now.Add(-5 * time.Second)}}}}
		ro := &v1beta1.FleetRollout{Batches: []v1beta1.RolloutBatch{{Name: "canary", Clusters: []string{"west"}}},
			Gate: v1beta1.RolloutGate{TimeoutSeconds: 60, XDS: xds}}
		if _, _, err := r.driveRollout(t.Context(), ist, &render.ControlPlane{ClusterName: "primary", Namespace: "istio-system"}, ro, "1-29-6", "1-30-3", now); err != nil {
			t.Fatal(err)
		}
		return ist.Status.Rollout
	}

	st := step(&v1beta1.RolloutXDSGate{}, "1-30-3")
	if b := st.Batches[0]; st.Phase != rolloutHalted || b.Phase != "RolledBack" ||
		b.Reason != "1 of 1 proxies NACKed the config of istiod-1-30-3: proxy client-0.apps (cluster west) NACKed Cluster: unexpected lbPolicy MAGLEV" {
		t.Errorf("with gate.xds: %s, batch %+v; want rolled back on west's NACK", st.Phase, b)
	}
	if reads != 1 {
		t.Errorf("sync state read %d times, want 1", reads)
	}
	st = step(nil, "1-30-3")
	if b := st.Batches[0]; b.Phase != "Gating" || b.Reason != "istiod-1-30-3 not ready" || reads != 1 {
		t.Errorf("without gate.xds: batch %+v after %d reads; want gating on istiod, the sync state not read", b, reads)
	}
	st = step(nil, "1-29-6")
	if b := st.Batches[0]; b.Phase != "Gating" || b.Reason != "default tag not yet moved to 1-30-3 in west" {
		t.Errorf("move not applied: batch %+v; want waiting for west", b)
	}
}
