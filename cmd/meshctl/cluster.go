package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/manifests"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/install"
	"github.com/meshfleet/meshfleet/pkg/kubeconfig"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
	"github.com/meshfleet/meshfleet/pkg/operator/remoteistio"
	"github.com/meshfleet/meshfleet/pkg/preflight"
	"github.com/meshfleet/meshfleet/pkg/tunnel"
)

func newClusterCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Join, remove and list the remote clusters of the mesh"}
	cmd.AddCommand(newJoinCommand(g), newLeaveCommand(g), newListCommand(g))
	return cmd
}

type joinOptions struct {
	remoteKubeconfig string
	remoteContext    string
	tunnel           bool
	tunnelServer     string
	network          string
	pilotAddress     string
	inject           []string
	wait             time.Duration
}

func newJoinCommand(g *globals) *cobra.Command {
	o := &joinOptions{}
	cmd := &cobra.Command{
		Use:   "join NAME",
		Short: "Join a remote cluster to the mesh",
		Long: `join checks the remote cluster, stores its kubeconfig in a Secret of the
primary, creates the RemoteIstio and waits until the cluster is Ready.

With --tunnel the remote is reached through the meshfleet tunnel instead and
no credential of it is stored: join prints the tunnel agent's manifest, with
a certificate for this cluster issued from the mesh's root, to apply in the
remote cluster (kubectl --context REMOTE apply -f -).`,
		Example: `  meshctl cluster join west --remote-kubeconfig ~/.kube/west.yaml --inject default
  meshctl cluster join private-dc --tunnel --tunnel-server tunnel.example.com:443 > agent.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runJoin(cmd, g, o, args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&o.remoteKubeconfig, "remote-kubeconfig", "", "kubeconfig of the remote cluster")
	f.StringVar(&o.remoteContext, "remote-context", "", "context of --remote-kubeconfig to use")
	f.BoolVar(&o.tunnel, "tunnel", false, "reach the remote through the tunnel; prints the agent manifest")
	f.StringVar(&o.tunnelServer, "tunnel-server", "", "host:port where agents reach the tunnel server (with --tunnel)")
	f.StringVar(&o.network, "network", "", "the remote's network (default: per the mesh's mode)")
	f.StringVar(&o.pilotAddress, "pilot-address", "", "where the remote's proxies reach istiod (default: the primary's east-west gateway)")
	f.StringSliceVar(&o.inject, "inject", nil, "namespaces of the remote whose pods get sidecars")
	f.DurationVar(&o.wait, "wait", 5*time.Minute, "how long to wait for the cluster to be Ready (0: do not wait)")
	return cmd
}

func runJoin(cmd *cobra.Command, g *globals, o *joinOptions, name string) error {
	out := cmd.OutOrStdout()
	ctx := cmd.Context()
	if o.tunnel == (o.remoteKubeconfig != "") {
		return &exitError{exitUsage, fmt.Errorf("give either --remote-kubeconfig (direct) or --tunnel")}
	}
	c, _, err := g.client()
	if err != nil {
		return err
	}
	ri := &v1beta1.RemoteIstio{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: "RemoteIstio"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.namespace},
		Spec: v1beta1.RemoteIstioSpec{
			Network: o.network, PilotAddress: o.pilotAddress, AutoInjectionNamespaces: o.inject,
		},
	}
	if o.tunnel {
		return joinTunnel(ctx, cmd, c, g, o, ri)
	}

	raw, err := minifiedKubeconfig(o.remoteKubeconfig, o.remoteContext)
	if err != nil {
		return &exitError{exitUsage, err}
	}
	// The operator refuses kubeconfigs that run plugins or read files: say so
	// before anything is written.
	if _, errs := kubeconfig.Inline(raw); len(errs) > 0 {
		return &exitError{exitUsage, fmt.Errorf("--remote-kubeconfig: the operator accepts only inline credentials, nothing was changed: %w", errs.ToAggregate())}
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return &exitError{exitUsage, fmt.Errorf("--remote-kubeconfig: %w", err)}
	}
	results, _ := preflight.Cluster(ctx, name, cfg, preflight.InstallAccess)
	preflight.Print(out, results)
	if preflight.Failed(results) {
		return &exitError{exitPreflight, fmt.Errorf("pre-flight checks of cluster %s failed; nothing was changed", name)}
	}
	secret := install.KubeconfigSecret(g.namespace, name+"-kubeconfig", raw)
	ri.Spec.KubeconfigSecretRef = &corev1.LocalObjectReference{Name: secret.Name}
	return createAndWait(ctx, cmd, c, o.wait, ri, secret)
}

func createAndWait(ctx context.Context, cmd *cobra.Command, c client.Client, wait time.Duration, ri *v1beta1.RemoteIstio, objs ...client.Object) error {
	out := cmd.OutOrStdout()
	for _, o := range append(objs, ri) {
		if err := c.Create(ctx, o); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return &exitError{exitFailure, fmt.Errorf("%s %s/%s already exists; `meshctl cluster leave %s` first to join again",
					o.GetObjectKind().GroupVersionKind().Kind, o.GetNamespace(), o.GetName(), ri.Name)}
			}
			return fmt.Errorf("create %s: %w", o.GetName(), err)
		}
	}
	fmt.Fprintf(out, "\n• RemoteIstio %s/%s created\n", ri.Namespace, ri.Name)
	if wait <= 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := install.Wait(wctx, c, ri, v1beta1.ConditionReady, out); err != nil {
		code := exitFailure
		if wctx.Err() != nil {
			code = exitNotReady
		}
		return &exitError{code, err}
	}
	fmt.Fprintf(out, "\nCluster %s joined the mesh.\n", ri.Name)
	return nil
}

// joinTunnel creates the RemoteIstio and prints the agent manifest with a
// certificate for the cluster, issued from the mesh root.
func joinTunnel(ctx context.Context, cmd *cobra.Command, c client.Client, g *globals, o *joinOptions, ri *v1beta1.RemoteIstio) error {
	if o.tunnelServer == "" {
		return &exitError{exitUsage, fmt.Errorf("--tunnel needs --tunnel-server host:port, where the remote's agent reaches the tunnel server")}
	}
	root := &corev1.Secret{}
	key := client.ObjectKey{Namespace: g.namespace, Name: meshca.RootSecretName}
	if err := c.Get(ctx, key, root); err != nil {
		return fmt.Errorf("reading the mesh root (Secret %s): %w; install the control plane first (meshctl install), or use --remote-kubeconfig", key, err)
	}
	kp, err := ca.ParseKeyPair(root.Data[meshca.RootCertKey], root.Data[meshca.RootKeyKey], time.Now())
	if err != nil {
		return fmt.Errorf("the mesh root in Secret %s: %w", key, err)
	}
	leaf, err := tunnel.IssueAgentCertificate(kp, ri.Name, tunnel.CertificateOptions{TTL: 365 * 24 * time.Hour, Now: time.Now()})
	if err != nil {
		return err
	}
	agent, err := manifests.Tunnel.ReadFile("tunnel/agent.yaml")
	if err != nil {
		return err
	}
	manifest := strings.NewReplacer("CLUSTER_NAME", ri.Name, "TUNNEL_SERVER:443", o.tunnelServer).Replace(string(agent))
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "meshfleet-tunnel-agent-tls", Namespace: install.OperatorNamespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": kp.CertPEM},
	}
	u, err := install.ToUnstructured(secret, secret.TypeMeta)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "# Apply this in cluster %s: it holds the agent's certificate for that cluster only.\n", ri.Name)
	if err := install.Print(cmd.OutOrStdout(), append(namespaceFirst(), u)); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "---\n%s", manifest)
	// The RemoteIstio waits for the agent; do not block the printed manifest on it.
	if err := c.Create(ctx, ri); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create RemoteIstio %s/%s: %w", ri.Namespace, ri.Name, err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "# RemoteIstio %s/%s created; it becomes Ready once the agent connects (meshctl cluster list).\n", ri.Namespace, ri.Name)
	return nil
}

func namespaceFirst() []*unstructured.Unstructured {
	return []*unstructured.Unstructured{install.Namespace(install.OperatorNamespace)}
}

// minifiedKubeconfig keeps only the chosen context, with credentials inlined,
// so the Secret is self-contained.
func minifiedKubeconfig(path, context string) ([]byte, error) {
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("--remote-kubeconfig: %w", err)
	}
	if context != "" {
		if _, ok := kc.Contexts[context]; !ok {
			return nil, fmt.Errorf("--remote-context %q is not in %s", context, path)
		}
		kc.CurrentContext = context
	}
	if err := clientcmdapi.MinifyConfig(kc); err != nil {
		return nil, fmt.Errorf("--remote-kubeconfig: %w", err)
	}
	if err := clientcmdapi.FlattenConfig(kc); err != nil {
		return nil, fmt.Errorf("--remote-kubeconfig: %w", err)
	}
	return clientcmd.Write(*kc)
}

func newLeaveCommand(g *globals) *cobra.Command {
	var timeout time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "leave NAME",
		Short: "Remove a remote cluster from the mesh (and what meshfleet installed in it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			ri := &v1beta1.RemoteIstio{ObjectMeta: metav1.ObjectMeta{Name: args[0], Namespace: g.namespace}}
			existed := false
			if force {
				patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+remoteistio.AnnotationAbandon+`":"true"}}}`))
				err := c.Patch(cmd.Context(), ri, patch)
				if client.IgnoreNotFound(err) != nil {
					return err
				}
				existed = err == nil
			}
			if err := c.Delete(cmd.Context(), ri); err != nil {
				if apierrors.IsNotFound(err) && !existed {
					return &exitError{exitFailure, fmt.Errorf("no cluster %s in the mesh (RemoteIstio %s/%s not found); see meshctl cluster list", args[0], g.namespace, args[0])}
				}
				if !apierrors.IsNotFound(err) {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			for {
				err := c.Get(ctx, client.ObjectKeyFromObject(ri), ri)
				if apierrors.IsNotFound(err) {
					break
				}
				if ctx.Err() != nil {
					return &exitError{exitNotReady, fmt.Errorf("cluster %s is still being cleaned up: %s (leave --force stops waiting for an unreachable cluster and leaves its objects behind)", args[0], firstProblem(ri.Status.Conditions))}
				}
				time.Sleep(300 * time.Millisecond)
			}
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: args[0] + "-kubeconfig", Namespace: g.namespace}}
			_ = client.IgnoreNotFound(c.Delete(cmd.Context(), secret))
			fmt.Fprintf(cmd.OutOrStdout(), "Cluster %s left the mesh.\n", args[0])
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the clean-up")
	cmd.Flags().BoolVar(&force, "force", false, "remove the cluster even if it cannot be reached, leaving meshfleet's objects in it")
	return cmd
}

func firstProblem(conds []metav1.Condition) string {
	for _, c := range conds {
		if c.Status != metav1.ConditionTrue {
			return fmt.Sprintf("%s: %s", c.Type, c.Message)
		}
	}
	return "waiting for the operator"
}
