package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/check"
)

// endpointFlags are the components' addresses given on the command line;
// empty ones come from the kubeconfig (check.EndpointsExtension).
type endpointFlags struct{ check.Endpoints }

func (e *endpointFlags) add(cmd *cobra.Command, locality bool) {
	f := cmd.Flags()
	f.StringVar(&e.IstiodDebug, "istiod-debug", "", "URL of istiod's debug endpoints (its port 15014, e.g. through kubectl port-forward); default from the kubeconfig's "+check.EndpointsExtension+" extension")
	f.StringVar(&e.TunnelMetrics, "tunnel-metrics", "", "URL of the active tunnel server's /metrics; default from the kubeconfig")
	if locality {
		f.StringVar(&e.LocalityDebug, "xds-debug", "", "URL of the locality server's debug address (meshfleet locality --debug-addr); default from the kubeconfig")
	}
}

// endpoints merges the flags over what the kubeconfig carries.
func (g *globals) endpoints(flags check.Endpoints) (check.Endpoints, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = g.kubeconfig
	raw, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: g.context}).RawConfig()
	if err != nil {
		return flags, nil // the client's own loading reports it
	}
	fromKubeconfig, err := check.EndpointsFromKubeconfig(&raw, g.context)
	if err != nil {
		return flags, &exitError{exitUsage, err}
	}
	return flags.Or(fromKubeconfig), nil
}

func newCheckCommand(g *globals) *cobra.Command {
	var eps endpointFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the mesh end to end, each failing check with a hint (exit 1 on failure)",
		Long: `Runs grouped checks: the Kubernetes API and versions, meshfleet's and Istio's
CRDs, the operator, every member's state, the CA chain and expiry (the root and
each cluster's cacerts), istiod's own view of every remote (its /debug/clusterz,
what istioctl x remote-clusters shows) and whether the credentials it holds are
accepted, the tunnel agents of every tunnelled remote with their RTT, the
locality server (its published health and its debug endpoint) and the gateways.
Every failing check says what to do. Warnings (an address not given, a
certificate close to expiry) do not fail the command.

istiod, the tunnel server and the locality server are reached at the URLs given
by flags, else those the kubeconfig's context carries (the sandbox writes them).`,
		Example: `  meshctl check
  meshctl check --istiod-debug http://localhost:15014 --tunnel-metrics http://localhost:9090/metrics -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			cfg, err := g.config()
			if err != nil {
				return err
			}
			e, err := g.endpoints(eps.Endpoints)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 4*timeout)
			defer cancel()
			facts := check.Gather(ctx, check.Sources{Config: cfg, Namespace: g.namespace, Endpoints: e, Timeout: timeout})
			results := check.Run(facts, check.Checks)
			if err := printChecks(cmd.OutOrStdout(), g.output, results); err != nil {
				return err
			}
			if check.Failed(results) {
				return &exitError{exitFailure, fmt.Errorf("%d check(s) failed", countStatus(results, check.StatusFail))}
			}
			return nil
		},
	}
	eps.add(cmd, true)
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for each answer")
	return cmd
}

func countStatus(rs []check.Result, s check.Status) int {
	n := 0
	for _, r := range rs {
		if r.Status == s {
			n++
		}
	}
	return n
}

// printChecks prints the results as a checklist grouped like linkerd
// check's (√ passed, ‼ warning, × failed, each with its hint), or as JSON
// or YAML.
func printChecks(w io.Writer, format string, rs []check.Result) error {
	doc := map[string]any{"results": rs, "failed": countStatus(rs, check.StatusFail), "warnings": countStatus(rs, check.StatusWarn)}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	case "yaml":
		b, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	last := ""
	for _, r := range rs {
		if r.Group != last {
			if last != "" {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s\n%s\n", r.Group, strings.Repeat("-", len(r.Group)))
			last = r.Group
		}
		mark := map[check.Status]string{check.StatusOK: "√", check.StatusWarn: "‼", check.StatusFail: "×"}[r.Status]
		line := r.Check
		if r.Message != "" {
			line += ": " + r.Message
		}
		fmt.Fprintf(w, "%s %s\n", mark, line)
		if r.Status != check.StatusOK && r.Hint != "" {
			fmt.Fprintf(w, "    hint: %s\n", r.Hint)
		}
	}
	status := "Status check results are √"
	switch {
	case check.Failed(rs):
		status = fmt.Sprintf("Status check results are × (%d failed, %d warning(s))", countStatus(rs, check.StatusFail), countStatus(rs, check.StatusWarn))
	case countStatus(rs, check.StatusWarn) > 0:
		status = fmt.Sprintf("Status check results are √ with %d warning(s)", countStatus(rs, check.StatusWarn))
	}
	fmt.Fprintf(w, "\n%s\n", status)
	return nil
}
