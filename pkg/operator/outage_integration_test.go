//go:build integration

package operator_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/operator/conditions"
)

// remoteOutage stops a joined remote's kube-apiserver: the RemoteIstio says
// Unreachable (Connected=False, phase Unreachable, the Istio resource's
// member too) while the other conditions keep their last known True, their
// message saying so; once the API server is back, everything is Ready again.
func (h *remoteHarness) remoteOutage(t *testing.T) {
	const name = "remote2"
	ready := h.waitRemote(name, v1beta1.ConditionReady, metav1.ConditionTrue)
	h.expectMemberReadyGauge(name, 1)
	cluster := h.env.Cluster(name)
	start := time.Now()
	if err := cluster.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !cluster.APIServerRunning() {
			_ = cluster.StartAPIServer(h.ctx)
		}
	})
	h.expectUnreachable(t, name, ready)
	t.Logf("BENCH remote API server killed → RemoteIstio Unreachable: %v", time.Since(start).Round(time.Millisecond))
	h.expectMemberPhase(name, v1beta1.PhaseUnreachable)
	// Ready is kept as last known, but the gauge says what is true now.
	h.expectMemberReadyGauge(name, 0)
	h.expectMemberReadyGauge("remote1", 1)
	// The other remote is not affected.
	if ri := h.waitRemote("remote1", v1beta1.ConditionReady, metav1.ConditionTrue); ri.Status.Phase != v1beta1.PhaseReady {
		t.Errorf("remote1 phase %s during remote2's outage", ri.Status.Phase)
	}

	if err := cluster.StartAPIServer(h.ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	h.expectRecovered(t, name)
	t.Logf("BENCH remote API server back → RemoteIstio Ready: %v", time.Since(start).Round(time.Millisecond))
	h.expectMemberPhase(name, v1beta1.PhaseReady)
	h.expectMemberReadyGauge(name, 1)
}

// expectMemberReadyGauge waits for meshfleet_member_ready{cluster=name}.
func (h *remoteHarness) expectMemberReadyGauge(name string, want float64) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("meshfleet_member_ready{cluster=%q} %v", name, want), func() error {
		if got := gatherSum("meshfleet_member_ready", map[string]string{"cluster": name, "role": "remote"}); got != want {
			return fmt.Errorf("meshfleet_member_ready{cluster=%q} = %v", name, got)
		}
		return nil
	})
}

// expectUnreachable waits for Connected=False Unreachable on name and checks
// that every other condition kept what it was in ready, marked last known.
func (h *remoteHarness) expectUnreachable(t *testing.T, name string, ready *v1beta1.RemoteIstio) {
	t.Helper()
	var ri *v1beta1.RemoteIstio
	eventually(h.t, "RemoteIstio "+name+" Unreachable", func() error {
		ri = &v1beta1.RemoteIstio{}
		h.get("primary", ns, name, ri)
		c := meta.FindStatusCondition(ri.Status.Conditions, v1beta1.ConditionConnected)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1beta1.ReasonUnreachable {
			return fmt.Errorf("phase %s, conditions: %s", ri.Status.Phase, formatConditions(ri.Status.Conditions))
		}
		return nil
	})
	t.Logf("during the outage: phase %s, %s", ri.Status.Phase, formatConditions(ri.Status.Conditions))
	if ri.Status.Phase != v1beta1.PhaseUnreachable {
		t.Errorf("phase %s, want Unreachable", ri.Status.Phase)
	}
	for _, typ := range []string{v1beta1.ConditionCertificatesIssued, v1beta1.ConditionInstalled, v1beta1.ConditionReady} {
		got, was := meta.FindStatusCondition(ri.Status.Conditions, typ), meta.FindStatusCondition(ready.Status.Conditions, typ)
		if got == nil || got.Status != metav1.ConditionTrue || got.Reason != was.Reason {
			t.Errorf("%s = %+v during the outage, want its last known status True/%s kept", typ, got, was.Reason)
			continue
		}
		// The first clause: a tunnelled cluster's agent certificate may have
		// been renewed since ready was read.
		first, _, _ := strings.Cut(was.Message, ";")
		if !strings.HasPrefix(got.Message, conditions.LastKnownPrefix) || !strings.Contains(got.Message, "): "+first) {
			t.Errorf("%s message %q does not say it is the last known %q", typ, got.Message, was.Message)
		}
		if !got.LastTransitionTime.Equal(&was.LastTransitionTime) {
			t.Errorf("%s transition time moved from %v to %v: nothing changed in the cluster", typ, was.LastTransitionTime, got.LastTransitionTime)
		}
	}
}

func (h *remoteHarness) expectRecovered(t *testing.T, name string) {
	t.Helper()
	eventually(h.t, "RemoteIstio "+name+" Ready again", func() error {
		ri := &v1beta1.RemoteIstio{}
		h.get("primary", ns, name, ri)
		if ri.Status.Phase != v1beta1.PhaseReady {
			return fmt.Errorf("phase %s, conditions: %s", ri.Status.Phase, formatConditions(ri.Status.Conditions))
		}
		for _, c := range ri.Status.Conditions {
			if c.Status != metav1.ConditionTrue || strings.HasPrefix(c.Message, conditions.LastKnownPrefix) {
				return fmt.Errorf("conditions: %s", formatConditions(ri.Status.Conditions))
			}
		}
		return nil
	})
}

func (h *remoteHarness) expectMemberPhase(name string, phase v1beta1.Phase) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("Istio lists member %s as %s", name, phase), func() error {
		ist := &v1beta1.Istio{}
		h.get("primary", ns, "istio", ist)
		for _, m := range ist.Status.Members {
			if m.Name == name && m.Phase == phase {
				return nil
			}
		}
		return fmt.Errorf("members %+v", ist.Status.Members)
	})
}

// remoteEtcdOutage joins a remote whose kube-apiserver has an etcd of its
// own and kills that etcd: the API server still answers, but reads and
// writes fail (500, 504 or a timeout). That is the same outage: Unreachable
// with the last known conditions kept, never ApplyFailed or
// CertificatesIssued=False for the user to act on.
func (h *remoteHarness) remoteEtcdOutage(t *testing.T) {
	const name = "remote4"
	dir := filepath.Join(h.env.Dir, name)
	etcd, err := localcluster.StartEtcd(h.ctx, dir, h.env.Bins.Etcd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Stop() })
	cluster, err := localcluster.StartCluster(h.ctx, etcd, h.env.Bins, localcluster.ClusterOptions{Name: name, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	h.kubeconfigSecret(name+"-kubeconfig", cluster.Kubeconfig)
	h.apply(fmt.Sprintf(`{"apiVersion":"meshfleet.io/v1beta1","kind":"RemoteIstio","metadata":{"name":%q,"namespace":"istio-system"},
		"spec":{"kubeconfigSecretRef":{"name":"%s-kubeconfig"},"pilotAddress":"203.0.113.10"}}`, name, name))
	ready := h.waitRemote(name, v1beta1.ConditionReady, metav1.ConditionTrue)
	defer func() {
		h.kubectl("primary", "-n", ns, "delete", "remoteistio", name, "--timeout=60s")
	}()

	start := time.Now()
	if err := etcd.Kill(); err != nil {
		t.Fatal(err)
	}
	h.expectUnreachable(t, name, ready)
	t.Logf("BENCH remote etcd killed → RemoteIstio Unreachable: %v", time.Since(start).Round(time.Millisecond))
	h.expectMemberPhase(name, v1beta1.PhaseUnreachable)
	// Several resyncs later it still is an outage, not a failed step.
	resyncs := time.Now().Add(5 * time.Second)
	for time.Now().Before(resyncs) {
		ri := &v1beta1.RemoteIstio{}
		h.get("primary", ns, name, ri)
		for _, c := range ri.Status.Conditions {
			if c.Status == metav1.ConditionFalse && c.Type != v1beta1.ConditionConnected {
				t.Fatalf("during the etcd outage %s=False %s: %s", c.Type, c.Reason, c.Message)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}

	if err := etcd.Restart(h.ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	h.expectRecovered(t, name)
	t.Logf("BENCH remote etcd back → RemoteIstio Ready: %v", time.Since(start).Round(time.Millisecond))
}
