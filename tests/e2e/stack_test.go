//go:build e2e

package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/tests/testenv"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// stack is one cluster with Istio's CRDs and an istiod watching it.
type stack struct {
	env     *testenv.Env
	cluster *localcluster.Cluster
	kube    kubernetes.Interface
	istiod  *localistiod.Istiod
}

// startStack starts etcd, a kube-apiserver named name, installs Istio's
// CRDs, creates istio-system and default/default, and starts istiod with
// meshConfig. Everything is stopped by t.Cleanup.
func startStack(t *testing.T, name, meshConfig string) *stack {
	t.Helper()
	s := startCluster(t, name)
	s.startIstiod(t, meshConfig)
	return s
}

// startCluster is startStack without istiod (s.istiod is nil until
// startIstiod).
func startCluster(t *testing.T, name string) *stack {
	t.Helper()
	env := testenv.Start(t, localcluster.ClusterOptions{Name: name})
	c := env.Cluster(name)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := localistiod.InstallCRDs(ctx, c.Config); err != nil {
		t.Fatal(err)
	}
	t.Logf("Istio CRDs established in %v", time.Since(start).Round(time.Millisecond))
	kube := kubernetes.NewForConfigOrDie(c.Config)
	mustCreate(t, "namespace istio-system", func() error {
		_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{})
		return err
	})
	// No kube-controller-manager: Pods need the default ServiceAccount.
	mustCreate(t, "serviceaccount default/default", func() error {
		_, err := kube.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		return err
	})
	return &stack{env: env, cluster: c, kube: kube}
}

// startIstiod starts the stack's istiod with meshConfig.
func (s *stack) startIstiod(t *testing.T, meshConfig string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s.istiod = startIstiod(ctx, t, localistiod.Options{
		Kubeconfig: s.cluster.Kubeconfig,
		Dir:        filepath.Join(s.env.Dir, "istiod-"+s.cluster.Name),
		ClusterID:  s.cluster.Name,
		MeshConfig: meshConfig,
	})
}

func mustCreate(t *testing.T, what string, create func() error) {
	t.Helper()
	if err := create(); err != nil {
		t.Fatalf("creating %s: %v", what, err)
	}
}
