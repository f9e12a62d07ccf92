package chart

import (
	"context"
	"fmt"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Install installs the chart as release ReleaseName into namespace (created
// if missing) with the Helm SDK, as `helm install --create-namespace` does,
// against the cluster of kubeconfig. It waits for the CRDs to be
// established (Helm does before the templates), not for the operator's
// pods.
func Install(ctx context.Context, kubeconfig, namespace string, values map[string]any) error {
	c, err := Load()
	if err != nil {
		return err
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &kubeconfig, &namespace
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		return fmt.Errorf("helm configuration for %s: %w", kubeconfig, err)
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace, in.CreateNamespace = ReleaseName, namespace, true
	in.WaitStrategy, in.Timeout = kube.HookOnlyStrategy, 2*time.Minute
	if _, err := in.RunWithContext(ctx, c, values); err != nil {
		return fmt.Errorf("helm install %s into %s: %w", ReleaseName, namespace, err)
	}
	return nil
}
