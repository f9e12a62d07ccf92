package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/pkg/operator"
	"github.com/meshfleet/meshfleet/pkg/version"
)

// globals are the kubectl-style flags every command shares.
type globals struct {
	kubeconfig string
	context    string
	namespace  string
	output     string
}

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "meshctl",
		Short:         "Install and run a meshfleet multi-cluster Istio mesh",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	f := root.PersistentFlags()
	f.StringVar(&g.kubeconfig, "kubeconfig", "", "kubeconfig of the primary cluster (default $KUBECONFIG, then ~/.kube/config)")
	f.StringVar(&g.context, "context", "", "kubeconfig context to use")
	f.StringVarP(&g.namespace, "namespace", "n", "istio-system", "namespace of the mesh's Istio and RemoteIstio resources")
	f.StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	root.AddCommand(newInstallCommand(g), newUninstallCommand(g), newClusterCommand(g), newStatusCommand(g), newSandboxCommand(), newCanaryCommand(g), newDashboardCommand(g), newLocalityCommand(g), newCheckCommand(g), newIngressCommand(g))
	root.AddCommand(newCACommand(g))
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &exitError{exitUsage, err} })
	return root
}

// config loads the primary cluster's connection.
func (g *globals) config() (*rest.Config, error) {
	return loadConfig(g.kubeconfig, g.context)
}

func loadConfig(path, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		where := path
		if where == "" {
			where = "the default kubeconfig"
		}
		return nil, &exitError{exitUsage, fmt.Errorf("cannot load %s: %w (pass --kubeconfig and --context)", where, err)}
	}
	return cfg, nil
}

// client is a client of the primary with meshfleet's types.
func (g *globals) client() (client.Client, *rest.Config, error) {
	cfg, err := g.config()
	if err != nil {
		return nil, nil, err
	}
	scheme, err := operator.Scheme()
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	return c, cfg, nil
}

func (g *globals) checkOutput() error {
	switch g.output {
	case "table", "json", "yaml":
		return nil
	}
	return &exitError{exitUsage, fmt.Errorf("--output %q: use table, json or yaml", g.output)}
}
