//go:build integration

package chart

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/version"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestInstallUpgradeUninstall: helm install of the chart (Helm SDK) into a
// real kube-apiserver leaves every object it renders in the cluster and the
// CRDs established; helm upgrade to another image changes the operator's
// image (and the locality server's, through MESHFLEET_IMAGE); helm
// uninstall removes the operator and keeps the CRDs.
func TestInstallUpgradeUninstall(t *testing.T) {
	env := testenv.Start(t)
	primary := env.Cluster("primary")
	scheme := runtime.NewScheme()
	_ = apiextv1.AddToScheme(scheme)
	_ = appsv1.AddToScheme(scheme)
	c, err := client.New(primary.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	ns := install.OperatorNamespace

	if err := Install(ctx, primary.Kubeconfig, ns, nil); err != nil {
		t.Fatal(err)
	}
	objs, err := Render(ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		live := o.DeepCopy()
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
			t.Errorf("after helm install: %s %s: %v", o.GetKind(), client.ObjectKeyFromObject(o), err)
		}
	}
	for _, name := range []string{"istios.meshfleet.io", "remoteistios.meshfleet.io"} {
		crd := &apiextv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			t.Fatal(err)
		}
		if !established(crd) {
			t.Errorf("CRD %s not established after helm install", name)
		}
	}
	operatorImage := func() (string, string) {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "meshfleet-operator"}, d); err != nil {
			t.Fatal(err)
		}
		ctr := d.Spec.Template.Spec.Containers[0]
		return ctr.Image, ctr.Env[0].Value
	}
	if img, loc := operatorImage(); img != version.Image() || loc != img {
		t.Errorf("installed image %s, locality image %s; want %s", img, loc, version.Image())
	}

	if err := Upgrade(ctx, primary.Kubeconfig, ns, map[string]any{"image": map[string]any{"tag": "v9.9.9"}}); err != nil {
		t.Fatal(err)
	}
	want := version.Repository() + ":v9.9.9"
	if img, loc := operatorImage(); img != want || loc != want {
		t.Errorf("after helm upgrade: image %s, locality image %s; want %s", img, loc, want)
	}

	if err := Uninstall(primary.Kubeconfig, ns); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "helm uninstall removes the operator", func() error {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "meshfleet-operator"}, &appsv1.Deployment{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
	crd := &apiextv1.CustomResourceDefinition{}
	if err := c.Get(ctx, client.ObjectKey{Name: "istios.meshfleet.io"}, crd); err != nil {
		t.Errorf("helm uninstall removed the CRDs (and every Istio with them): %v", err)
	}
}

func established(crd *apiextv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
			return true
		}
	}
	return false
}
