//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// TestRemoteInjection sends AdmissionReviews to real istiod's remote
// injection path, /inject/cluster/<c>/net/<n> (the path the remote's
// rendered MutatingWebhookConfiguration calls), with istiod reading the
// injector ConfigMap rendered for the primary:
//   - the remote's rendered gateway gets the proxy image of the remote's
//     hub, region and version (RemoteIstio spec.hub/dockerImage/version);
//   - a workload of the remote gets the primary's values (image, IP ranges),
//     which is why FromRemoteIstio refuses remote injection settings;
//   - both get the remote's cluster ID and network.
func TestRemoteInjection(t *testing.T) {
	ist := &v1beta1.Istio{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Spec: v1beta1.IstioSpec{
		Version: "1.31.0", ClusterName: "primary", IncludeIPRanges: "10.96.0.0/12",
		MultiCluster: v1beta1.MultiClusterSpec{Mode: v1beta1.MultiClusterFlatNetwork}}}
	primary, errs := render.FromIstio(ist)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: "west", Namespace: "istio-system"}, Spec: v1beta1.RemoteIstioSpec{
		Network: "net-west", Hub: "registry.example.com/istio-catalog", DockerImage: v1beta1.DockerImageSpec{Region: "cn-beijing"},
		Version: "1.30.3", PilotAddress: "203.0.113.10",
		Gateways: v1beta1.GatewaysSpec{Enabled: true, Ingress: []v1beta1.IngressGatewaySpec{{Enabled: true}}}}}
	remote, errs := render.FromRemoteIstio(ri, primary)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	pm, err := render.Render(primary)
	if err != nil {
		t.Fatal(err)
	}
	rm, err := render.Render(remote)
	if err != nil {
		t.Fatal(err)
	}

	s := startCluster(t, "primary")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	injector := &corev1.ConfigMap{}
	if err := find(pm.Objects, "ConfigMap", "istio-sidecar-injector", injector); err != nil {
		t.Fatal(err)
	}
	injector.ResourceVersion, injector.OwnerReferences = "", nil
	mustCreate(t, "configmap istio-system/istio-sidecar-injector", func() error {
		_, err := s.kube.CoreV1().ConfigMaps("istio-system").Create(ctx, injector, metav1.CreateOptions{})
		return err
	})
	d := startIstiod(ctx, t, localistiod.Options{
		Kubeconfig: s.cluster.Kubeconfig,
		Dir:        filepath.Join(s.env.Dir, "istiod-primary"),
		ClusterID:  "primary",
		Env:        []string{"INJECT_ENABLED=true"},
	})

	// The path istiod is called on is the one rendered into the remote.
	hook := &webhookConfig{}
	if err := find(rm.Objects, "MutatingWebhookConfiguration", "istio-sidecar-injector", hook); err != nil {
		t.Fatal(err)
	}
	path := hook.Webhooks[0].ClientConfig.Service.Path
	if path == nil || *path != "/inject/cluster/west/net/net-west" {
		t.Fatalf("remote webhook path %v, want /inject/cluster/west/net/net-west", path)
	}
	url := "http://" + d.HTTPAddr + *path

	gw := &appsv1.Deployment{}
	if err := find(rm.Objects, "Deployment", render.DefaultIngressGateway, gw); err != nil {
		t.Fatal(err)
	}
	gwPod := &corev1.Pod{ObjectMeta: gw.Spec.Template.ObjectMeta, Spec: gw.Spec.Template.Spec}
	gwPod.Name, gwPod.Namespace = gw.Name+"-0", gw.Namespace
	got := inject(ctx, t, url, gwPod)
	wantImage := "registry.cn-beijing.example.com/istio-catalog/proxyv2:1.30.3"
	if img := proxyImage(got); img != wantImage {
		t.Errorf("remote gateway's injected proxy image %q, want %q (the remote's hub, region and version)", img, wantImage)
	}
	checkClusterEnv(t, "gateway", got)

	app := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default", Labels: map[string]string{"app": "app"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}}}
	got = inject(ctx, t, url, app)
	if img := proxyImage(got); img != "docker.io/istio/proxyv2:1.31.0" {
		t.Errorf("remote workload's proxy image %q, want the primary's docker.io/istio/proxyv2:1.31.0", img)
	}
	raw, _ := json.Marshal(got)
	if !strings.Contains(string(raw), "10.96.0.0/12") {
		t.Errorf("remote workload not given the primary's includeIPRanges 10.96.0.0/12:\n%s", raw)
	}
	checkClusterEnv(t, "workload", got)
}

// webhookConfig is the part of a MutatingWebhookConfiguration the test reads.
type webhookConfig struct {
	Webhooks []struct {
		ClientConfig struct {
			Service struct {
				Path *string `json:"path"`
			} `json:"service"`
		} `json:"clientConfig"`
	} `json:"webhooks"`
}

// find decodes the rendered object of the kind and name into out.
func find(objs []*unstructured.Unstructured, kind, name string, out any) error {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			b, err := json.Marshal(o.Object)
			if err != nil {
				return err
			}
			return json.Unmarshal(b, out)
		}
	}
	return fmt.Errorf("no %s %s rendered", kind, name)
}

// inject sends pod to istiod's injection endpoint in an AdmissionReview and
// returns the pod with the returned JSON patch applied.
func inject(ctx context.Context, t *testing.T, url string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("review-" + pod.Name),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:      pod.Name,
			Namespace: pod.Namespace,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s", url, resp.Status, out)
	}
	var answer admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &answer); err != nil {
		t.Fatalf("decoding the AdmissionReview answer: %v: %s", err, out)
	}
	if answer.Response == nil || !answer.Response.Allowed || len(answer.Response.Patch) == 0 {
		t.Fatalf("pod %s/%s not injected: %s", pod.Namespace, pod.Name, out)
	}
	patch, err := jsonpatch.DecodePatch(answer.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("applying istiod's patch: %v", err)
	}
	got := &corev1.Pod{}
	if err := json.Unmarshal(patched, got); err != nil {
		t.Fatal(err)
	}
	return got
}

func proxyImage(pod *corev1.Pod) string {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == "istio-proxy" {
				return c.Image
			}
		}
	}
	return ""
}

func checkClusterEnv(t *testing.T, what string, pod *corev1.Pod) {
	t.Helper()
	want := map[string]string{"ISTIO_META_CLUSTER_ID": "west", "ISTIO_META_NETWORK": "net-west"}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name != "istio-proxy" {
				continue
			}
			for _, e := range c.Env {
				if v, ok := want[e.Name]; ok && v == e.Value {
					delete(want, e.Name)
				}
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("%s's proxy lacks %v", what, want)
	}
}
