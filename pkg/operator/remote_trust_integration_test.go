//go:build integration

package operator_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

// untrustedKubeconfigs: a kubeconfig Secret is written by whoever may create
// Secrets and RemoteIstios; it must not make the operator run a program,
// read its own files, or skip TLS verification. Each is refused before
// anything is run or sent, with a condition naming the Secret, the key and
// the field.
func (h *remoteHarness) untrustedKubeconfigs(t *testing.T) {
	remote := h.env.Cluster("remote1")
	marker := filepath.Join(t.TempDir(), "exec-plugin-ran")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("operator-secret-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("the exec plugin of a kubeconfig Secret ran in the operator (marker %s exists)", marker)
		}
	}()
	cluster := fmt.Sprintf("    server: %s\n    certificate-authority-data: %s\n", remote.Config.Host, b64(remote.CACertPEM))
	kc := func(cluster, user string) string {
		return "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\nclusters:\n- name: c\n  cluster:\n" +
			cluster + "users:\n- name: u\n  user:\n" + user + "\n"
	}
	for i, c := range []struct {
		name, cluster, user, field string
	}{
		{"exec", cluster, fmt.Sprintf("    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      interactiveMode: Never\n      command: /bin/sh\n      args: [-c, 'touch %s; echo {\\\"apiVersion\\\":\\\"client.authentication.k8s.io/v1\\\",\\\"kind\\\":\\\"ExecCredential\\\",\\\"status\\\":{\\\"token\\\":\\\"x\\\"}}']", marker), "users[u].user.exec"},
		{"auth-provider", cluster, "    auth-provider:\n      name: oidc\n      config: {idp-issuer-url: 'https://198.51.100.9', client-id: x, id-token: x}", "users[u].user.auth-provider"},
		{"tokenFile", cluster, "    tokenFile: " + tokenFile, "users[u].user.tokenFile"},
		{"client certificate path", cluster, "    client-certificate: /etc/kubernetes/pki/admin.crt\n    client-key: /etc/kubernetes/pki/admin.key", "users[u].user.client-certificate"},
		{"insecure-skip-tls-verify", fmt.Sprintf("    server: %s\n    insecure-skip-tls-verify: true\n", remote.Config.Host), "    token: x", "clusters[c].cluster.insecure-skip-tls-verify"},
	} {
		name := fmt.Sprintf("untrusted-%d", i)
		h.secret(name, map[string]string{"kubeconfig": kc(c.cluster, c.user)})
		h.apply(fmt.Sprintf(`{"apiVersion":"meshfleet.io/v1beta1","kind":"RemoteIstio","metadata":{"name":%q,"namespace":"istio-system"},
			"spec":{"kubeconfigSecretRef":{"name":%q},"pilotAddress":"203.0.113.10"}}`, name, name))
		var cond *metav1.Condition
		eventually(h.t, "RemoteIstio "+name+" Connected decided", func() error {
			ri := &v1beta1.RemoteIstio{}
			h.get("primary", ns, name, ri)
			cond = meta.FindStatusCondition(ri.Status.Conditions, v1beta1.ConditionConnected)
			if cond == nil || cond.Status == metav1.ConditionUnknown {
				return fmt.Errorf("conditions: %s", formatConditions(ri.Status.Conditions))
			}
			return nil
		})
		t.Logf("%s: Connected=%s %s: %s", c.name, cond.Status, cond.Reason, cond.Message)
		if cond.Status != metav1.ConditionFalse || cond.Reason != v1beta1.ReasonBadKubeconfig {
			t.Errorf("%s: Connected=%s %s, want False %s", c.name, cond.Status, cond.Reason, v1beta1.ReasonBadKubeconfig)
		}
		for _, want := range []string{"Secret istio-system/" + name, `key "kubeconfig"`, "nothing was run or sent", c.field + ": Forbidden", "put the"} {
			if !strings.Contains(cond.Message, want) {
				t.Errorf("%s: condition %q does not say %q", c.name, cond.Message, want)
			}
		}
		h.kubectl("primary", "-n", ns, "annotate", "remoteistio", name, "meshfleet.io/abandon-remote=true")
		h.kubectl("primary", "-n", ns, "delete", "remoteistio", name, "--wait=true", "--timeout=60s")
	}
}

// tokenFileOption: istiod may follow token files named in remote secrets
// (PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS=tokenFile) only once a
// member is reached through the tunnel, whose remote secret needs it.
func (h *remoteHarness) tokenFileOption(want bool) func(t *testing.T) {
	return func(t *testing.T) {
		eventually(h.t, fmt.Sprintf("istiod's tokenFile option = %v", want), func() error {
			dep := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment"}}
			h.get("primary", ns, "istiod", dep)
			b, err := dep.MarshalJSON()
			if err != nil {
				return err
			}
			if got := strings.Contains(string(b), "PILOT_INSECURE_MULTICLUSTER_KUBECONFIG_OPTIONS"); got != want {
				return fmt.Errorf("istiod has the option: %v", got)
			}
			return nil
		})
	}
}

// istioDeletionHeld: deleting the primary's Istio while remotes are joined
// would leave each remote with an injection webhook (failurePolicy Fail)
// calling an istiod that is gone. The deletion waits, naming the remotes.
func (h *remoteHarness) istioDeletionHeld(t *testing.T) {
	h.kubectl("primary", "-n", ns, "delete", "istio", "istio", "--wait=false")
	eventually(h.t, "Istio deletion held with the remotes named", func() error {
		ist := &v1beta1.Istio{}
		h.get("primary", ns, "istio", ist)
		c := meta.FindStatusCondition(ist.Status.Conditions, v1beta1.ConditionReady)
		if ist.Status.Phase != v1beta1.PhaseDeleting || c == nil || c.Reason != v1beta1.ReasonRemotesJoined ||
			!strings.Contains(c.Message, "istio-system/remote1") || !strings.Contains(c.Message, "istio-system/remote3") {
			return fmt.Errorf("phase %s, conditions: %s", ist.Status.Phase, formatConditions(ist.Status.Conditions))
		}
		h.t.Logf("%s: %s", c.Reason, c.Message)
		return nil
	})
	// Nothing was uninstalled meanwhile: the remote's webhook still has its istiod.
	istiod := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment"}}
	h.get("primary", ns, "istiod", istiod)
	if istiod.GetDeletionTimestamp() != nil {
		t.Errorf("istiod is being deleted while remotes are joined")
	}
	// The remotes leave (remote3's agent is gone: abandoned), then the Istio goes.
	h.kubectl("primary", "-n", ns, "annotate", "remoteistio", "remote3", "meshfleet.io/abandon-remote=true")
	h.kubectl("primary", "-n", ns, "delete", "remoteistio", "remote1", "remote3", "--wait=false")
	eventually(h.t, "Istio uninstalled after its remotes left", func() error {
		err := h.clients["primary"].Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "istio"}, &v1beta1.Istio{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	webhook := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration"}}
	if err := h.clients["remote1"].Get(h.ctx, client.ObjectKey{Name: "istio-sidecar-injector"}, webhook); !apierrors.IsNotFound(err) {
		t.Errorf("remote1 keeps the injection webhook after leaving: %v", err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
