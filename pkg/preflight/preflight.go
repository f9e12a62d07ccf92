// Package preflight checks that a cluster can take a meshfleet install or
// join a mesh, before anything is written, and prints the results as a
// checklist grouped by category with a hint for each failure (in the manner
// of `linkerd check`).
package preflight

import (
	"context"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/pkg/render"
)

// Result is the outcome of one check.
type Result struct {
	Category string `json:"category"`
	Check    string `json:"check"`
	OK       bool   `json:"ok"`
	// Message says what was found.
	Message string `json:"message,omitempty"`
	// Hint says how to fix a failure.
	Hint string `json:"hint,omitempty"`
}

// Failed reports whether any check failed.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if !r.OK {
			return true
		}
	}
	return false
}

// Print writes results as a checklist, one block per category.
func Print(w io.Writer, rs []Result) {
	last := ""
	for _, r := range rs {
		if r.Category != last {
			if last != "" {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s\n%s\n", r.Category, strings.Repeat("-", len(r.Category)))
			last = r.Category
		}
		mark := "√"
		if !r.OK {
			mark = "×"
		}
		line := r.Check
		if r.Message != "" {
			line += ": " + r.Message
		}
		fmt.Fprintf(w, "%s %s\n", mark, line)
		if !r.OK && r.Hint != "" {
			fmt.Fprintf(w, "    hint: %s\n", r.Hint)
		}
	}
}

// Access is the permission one check needs.
type Access struct {
	Verb, Group, Resource, Namespace string
}

// InstallAccess is what installing the control plane needs: cluster-admin in practice.
var InstallAccess = []Access{
	{"create", "apiextensions.k8s.io", "customresourcedefinitions", ""},
	{"create", "rbac.authorization.k8s.io", "clusterroles", ""},
	{"create", "rbac.authorization.k8s.io", "clusterrolebindings", ""},
	{"create", "", "namespaces", ""},
	{"create", "apps", "deployments", "meshfleet-system"},
	{"create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", ""},
}

// Cluster runs the checks every install or join needs: the API answers, its
// version is supported, and the caller holds the permissions in access.
// Later checks are skipped when the API cannot be reached.
func Cluster(ctx context.Context, name string, cfg *rest.Config, access []Access) ([]Result, kubernetes.Interface) {
	cat := "cluster " + name
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return []Result{{Category: cat, Check: "kubeconfig is usable", Message: err.Error(),
			Hint: "check the kubeconfig and the context chosen in it"}}, nil
	}
	info, err := kube.Discovery().ServerVersion()
	if err != nil {
		return []Result{{Category: cat, Check: "can reach the Kubernetes API", Message: fmt.Sprintf("%s: %v", cfg.Host, err),
			Hint: "check that the API server is up and that the kubeconfig and its context point at it; kubectl get ns should work with the same kubeconfig"}}, nil
	}
	rs := []Result{{Category: cat, Check: "can reach the Kubernetes API", OK: true, Message: cfg.Host}}
	v, err := version.ParseGeneric(info.GitVersion)
	switch {
	case err != nil:
		rs = append(rs, Result{Category: cat, Check: "Kubernetes version is supported", Message: fmt.Sprintf("cannot parse %q", info.GitVersion),
			Hint: "the API server reports an unusual version; upgrade to an official release"})
	case v.LessThan(render.MinKubernetesVersion):
		rs = append(rs, Result{Category: cat, Check: "Kubernetes version is supported", Message: info.GitVersion,
			Hint: fmt.Sprintf("meshfleet needs Kubernetes %s or later; upgrade the cluster", render.MinKubernetesVersion)})
	default:
		rs = append(rs, Result{Category: cat, Check: "Kubernetes version is supported", OK: true, Message: info.GitVersion})
	}
	var denied []string
	for _, a := range access {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.Verb, Group: a.Group, Resource: a.Resource, Namespace: a.Namespace}}}
		got, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			denied = append(denied, fmt.Sprintf("%s %s (%v)", a.Verb, a.Resource, err))
			continue
		}
		if !got.Status.Allowed {
			denied = append(denied, a.Verb+" "+a.Resource)
		}
	}
	if len(denied) > 0 {
		rs = append(rs, Result{Category: cat, Check: "has the permissions to install", Message: "denied: " + strings.Join(denied, ", "),
			Hint: "run as a cluster administrator (a user bound to the cluster-admin ClusterRole)"})
	} else {
		rs = append(rs, Result{Category: cat, Check: "has the permissions to install", OK: true})
	}
	return rs, kube
}

// NoForeignIstio checks that no control plane meshfleet does not manage runs
// in namespace.
func NoForeignIstio(ctx context.Context, name string, kube kubernetes.Interface, namespace string) Result {
	r := Result{Category: "cluster " + name, Check: "no other Istio control plane"}
	d, err := kube.AppsV1().Deployments(namespace).Get(ctx, "istiod", metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		r.OK = true
	case err != nil:
		r.Message = err.Error()
	case managedByMeshfleet(d):
		r.OK, r.Message = true, "istiod in "+namespace+" is meshfleet's"
	default:
		r.Message = fmt.Sprintf("Deployment %s/istiod exists and is not managed by meshfleet", namespace)
		r.Hint = "uninstall that control plane first (istioctl uninstall --purge, or helm uninstall istiod)"
	}
	return r
}

func managedByMeshfleet(d *appsv1.Deployment) bool {
	return d.Labels["app.kubernetes.io/managed-by"] == "meshfleet"
}
