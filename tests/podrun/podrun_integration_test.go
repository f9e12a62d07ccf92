//go:build integration

package podrun_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/localproc"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/chart"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/locality/health"
	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/tests/podrun"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestChartThenRenderedPods installs the chart with the Helm SDK into a
// real kube-apiserver, runs the operator from the Deployment the chart
// installed (its args, env, projected token, service account and RBAC),
// creates an Istio with locality routing, and runs the locality server from
// the Deployment the operator rendered: the Istio's control plane is
// deployed and the locality server publishes its health ConfigMap.
func TestChartThenRenderedPods(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "meshfleet")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/meshfleet").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := testenv.Start(t)
	primary := env.Cluster("primary")
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	_ = apiextv1.AddToScheme(scheme)
	c, err := client.New(primary.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	ns := install.OperatorNamespace
	if err := chart.Install(ctx, primary.Kubeconfig, ns, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"istios.meshfleet.io", "remoteistios.meshfleet.io"} {
		crd := &apiextv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			t.Fatal(err)
		}
		established := false
		for _, cond := range crd.Status.Conditions {
			established = established || (cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue)
		}
		if !established {
			t.Errorf("CRD %s not established after helm install: %+v", name, crd.Status.Conditions)
		}
	}
	for _, o := range []client.Object{&corev1.ServiceAccount{}, &rbacv1.ClusterRole{}, &rbacv1.ClusterRoleBinding{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}} {
		key := client.ObjectKey{Name: "meshfleet-operator"}
		switch o.(type) {
		case *corev1.ServiceAccount:
			key.Namespace = ns
		case *rbacv1.Role, *rbacv1.RoleBinding:
			key = client.ObjectKey{Namespace: ns, Name: "meshfleet-operator-leader-election"}
		}
		if err := c.Get(ctx, key, o); err != nil {
			t.Errorf("after helm install: %T %s: %v", o, key, err)
		}
	}
	opDep := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "meshfleet-operator"}, opDep); err != nil {
		t.Fatal(err)
	}

	r := &podrun.Runner{Admin: primary.Config, APIServer: primary.URL, CACertPEM: primary.CACertPEM, Images: map[string]string{"*": bin}}
	health1, _ := localproc.FreePort()
	opPod := r.Run(t, opDep, podrun.Options{Args: map[string][]string{
		"operator": {"--metrics-addr=0", fmt.Sprintf("--health-addr=127.0.0.1:%d", health1)}}})

	// The projected token is for the tunnel's audience and the pod's
	// service account, as kubelet would mount it.
	tok, err := os.ReadFile(filepath.Join(opPod.Root, "volumes", "meshfleet-tunnel-token", "token"))
	if err != nil {
		t.Fatal(err)
	}
	review := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: string(tok), Audiences: []string{render.TunnelTokenAudience}}}
	if err := c.Create(ctx, review); err != nil {
		t.Fatal(err)
	}
	if !review.Status.Authenticated || review.Status.User.Username != "system:serviceaccount:"+ns+":meshfleet-operator" {
		t.Errorf("the operator's projected token: %+v", review.Status)
	}

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}); err != nil {
		t.Fatal(err)
	}
	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Spec: v1beta1.IstioSpec{
		Version: "1.30.3", Hub: "registry.example.com/istio", LocalityLB: v1beta1.LocalityLBSpec{Enabled: true}}}
	if err := c.Create(ctx, ist); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 3*time.Minute, "the chart's operator deploys the control plane", func() error {
		if err := opPod.Running(); err != nil {
			t.Fatal(err) // a crash does not heal: fail now
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(ist), ist); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(ist.Status.Conditions, v1beta1.ConditionControlPlaneDeployed) {
			return fmt.Errorf("conditions %+v", ist.Status.Conditions)
		}
		return nil
	})

	locDep := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "istio-system", Name: render.LocalityServerName}, locDep); err != nil {
		t.Fatal(err)
	}
	if got, want := locDep.Spec.Template.Spec.Containers[0].Image, opDep.Spec.Template.Spec.Containers[0].Image; got != want {
		t.Errorf("locality server image %s, want the operator's %s", got, want)
	}
	debug, _ := localproc.FreePort()
	locPod := r.Run(t, locDep, podrun.Options{Args: map[string][]string{
		"locality": {fmt.Sprintf("--debug-addr=127.0.0.1:%d", debug)}}})
	testenv.Eventually(t, 2*time.Minute, "the operator-rendered locality server publishes its health", func() error {
		if err := locPod.Running(); err != nil {
			t.Fatal(err) // a crash does not heal: fail now
		}
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "istio-system", Name: health.ConfigMapName}, cm); err != nil {
			return err
		}
		if cm.Data[health.Key] == "" {
			return fmt.Errorf("ConfigMap %s has no %s yet", health.ConfigMapName, health.Key)
		}
		return nil
	})
}
