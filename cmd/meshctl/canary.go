package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/canary"
)

func newCanaryCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "canary",
		Short: "Shift a service's traffic from a stable to a canary version, step by step",
		Long: `canary moves traffic between two subsets of a service (pods selected by
labels, in any cluster of the mesh) by writing a DestinationRule's subsets and
a VirtualService's weights. Routes and subsets it does not own, and the
DestinationRule's traffic policy (locality load balancing, outlier
detection), are kept. The canary's plan and progress live in an annotation on
the VirtualService (` + canary.AnnotationState + `).

-n is the service's namespace (default: the kubeconfig context's).`,
	}
	cmd.AddCommand(newCanaryStartCommand(g), newCanaryStepCommand(g), newCanaryPromoteCommand(g),
		newCanaryRollbackCommand(g), newCanaryStatusCommand(g))
	return cmd
}

// canaryController builds the controller for the service's namespace: -n
// when given, else the context's namespace, else default.
func canaryController(cmd *cobra.Command, g *globals) (*canary.Controller, error) {
	if err := g.checkOutput(); err != nil {
		return nil, err
	}
	cfg, err := g.config()
	if err != nil {
		return nil, err
	}
	ns := g.namespace
	if !cmd.Flags().Changed("namespace") {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = g.kubeconfig
		ns, _, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: g.context}).Namespace()
		if err != nil || ns == "" {
			ns = "default"
		}
	}
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("istio client for %s: %w", cfg.Host, err)
	}
	return &canary.Controller{Istio: ic, Namespace: ns}, nil
}

func newCanaryStartCommand(g *globals) *cobra.Command {
	var (
		o                        canary.StartOptions
		steps, stableLbl, canLbl string
		interval                 time.Duration
		promURL, selector        string
		minSuccess, maxLatency   float64
		window                   time.Duration
		minRequests              float64
	)
	cmd := &cobra.Command{
		Use:   "start SERVICE",
		Short: "Create the subsets and send the canary its first step's share",
		Example: `  # 10% to version v2, then 50%, then all of it, a step every 5 minutes,
  # rolled back if fewer than 99% of its requests succeed
  meshctl canary start reviews -n bookinfo --stable-labels version=v1 --canary-labels version=v2 \
    --steps 10,50,100 --interval 5m \
    --prometheus-url http://localhost:9090 --min-success-rate 0.99 --max-latency 500

  # a canary in another cluster of the mesh: select its pods by cluster
  meshctl canary start reviews --stable-labels version=v1 \
    --canary-labels version=v2,topology.istio.io/cluster=west`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := canaryController(cmd, g)
			if err != nil {
				return err
			}
			o.Service = args[0]
			if o.Steps, err = canary.ParseSteps(steps); err != nil {
				return &exitError{exitUsage, err}
			}
			if o.StableLabels, err = canary.ParseLabels(stableLbl); err != nil {
				return &exitError{exitUsage, fmt.Errorf("--stable-labels: %w", err)}
			}
			if o.CanaryLabels, err = canary.ParseLabels(canLbl); err != nil {
				return &exitError{exitUsage, fmt.Errorf("--canary-labels: %w", err)}
			}
			if promURL != "" {
				if selector == "" {
					selector, err = defaultSelector(o.Service, c, o.CanaryLabels)
					if err != nil {
						return &exitError{exitUsage, err}
					}
				}
				o.Gate = &canary.Gate{PrometheusURL: promURL, Selector: selector, Window: canary.Duration(window),
					MinSuccessRate: minSuccess, MaxLatencyMillis: maxLatency, MinRequests: minRequests}
				if err := o.Gate.Validate(); err != nil {
					return &exitError{exitUsage, err}
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := c.Start(ctx, o)
			if err != nil {
				return err
			}
			if interval <= 0 || s.Phase != canary.PhaseProgressing {
				return printCanary(cmd.OutOrStdout(), g.output, canary.Status{State: s, Namespace: c.Namespace})
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "canary %s at %s; next step in %v (Ctrl-C leaves it where it is)\n", o.Service, s.Split, interval)
			s, err = c.Run(ctx, o.Service, interval, func(s canary.State) { progressLine(cmd.ErrOrStderr(), s, interval) })
			if err != nil && ctx.Err() == nil {
				return err
			}
			return printCanary(cmd.OutOrStdout(), g.output, canary.Status{State: s, Namespace: c.Namespace})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.StableSubset, "stable-subset", "stable", "name of the stable version's DestinationRule subset")
	f.StringVar(&o.CanarySubset, "canary-subset", "canary", "name of the canary version's DestinationRule subset")
	f.StringVar(&stableLbl, "stable-labels", "", "labels of the stable version's pods, e.g. version=v1 (default: the subset must exist)")
	f.StringVar(&canLbl, "canary-labels", "", "labels of the canary version's pods, e.g. version=v2 (default: the subset must exist)")
	f.StringVar(&steps, "steps", "10,50,100", "the canary's share at each step, in percent, ending at 100")
	f.DurationVar(&interval, "interval", 0, "step on this schedule until promoted or rolled back (0: take the first step and return)")
	f.StringVar(&promURL, "prometheus-url", "", "Prometheus to read the analysis gate from (no gate without it)")
	f.StringVar(&selector, "gate-selector", "", `PromQL label matchers for the canary's requests (default: destination_service and destination_version from --canary-labels)`)
	f.Float64Var(&minSuccess, "min-success-rate", 0.99, "gate: lowest share of successful requests, 0..1 (0 disables)")
	f.Float64Var(&maxLatency, "max-latency", 0, "gate: highest p99 latency in milliseconds (0 disables)")
	f.DurationVar(&window, "window", time.Minute, "gate: how far back each reading looks")
	f.Float64Var(&minRequests, "min-requests", 20, "gate: requests a reading needs; with fewer the canary holds")
	return cmd
}

// defaultSelector picks the canary's requests by service and version label.
func defaultSelector(service string, c *canary.Controller, labels map[string]string) (string, error) {
	host := canary.Target{Service: service, Namespace: c.Namespace, Domain: canary.DefaultDomain}.Host()
	for _, k := range []string{"version", "app.kubernetes.io/version"} {
		if v, ok := labels[k]; ok {
			return fmt.Sprintf(`destination_service=%q,destination_version=%q`, host, v), nil
		}
	}
	return "", fmt.Errorf("cannot tell the canary's requests apart: --canary-labels has no version label; pass --gate-selector, e.g. 'destination_workload=\"%s-v2\"'", service)
}

func newCanaryStepCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "step SERVICE",
		Short: "Move the canary to its next step (checking its gate first; a failing gate rolls it back)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := canaryController(cmd, g)
			if err != nil {
				return err
			}
			s, err := c.Step(cmd.Context(), args[0], force)
			if hold := (*canary.HoldError)(nil); errors.As(err, &hold) {
				return fmt.Errorf("%w (meshctl canary step --force %s)", err, args[0])
			}
			if err != nil {
				return err
			}
			if err := printCanary(cmd.OutOrStdout(), g.output, canary.Status{State: s, Namespace: c.Namespace}); err != nil {
				return err
			}
			if s.Phase == canary.PhaseRolledBack {
				return fmt.Errorf("canary %s rolled back: %s", args[0], s.Message)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "step even if the gate has too little traffic to judge")
	return cmd
}

func newCanaryPromoteCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "promote SERVICE",
		Short: "Send all traffic to the canary",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := canaryController(cmd, g)
			if err != nil {
				return err
			}
			s, err := c.Promote(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printCanary(cmd.OutOrStdout(), g.output, canary.Status{State: s, Namespace: c.Namespace})
		},
	}
}

func newCanaryRollbackCommand(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Send all traffic back to the stable version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := canaryController(cmd, g)
			if err != nil {
				return err
			}
			s, err := c.Rollback(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return printCanary(cmd.OutOrStdout(), g.output, canary.Status{State: s, Namespace: c.Namespace})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the canary's status")
	return cmd
}

func newCanaryStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status SERVICE",
		Short: "Show the canary's weights, phase and a fresh reading of its gate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := canaryController(cmd, g)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			st, err := c.Status(ctx, args[0])
			if err != nil {
				return err
			}
			return printCanary(cmd.OutOrStdout(), g.output, st)
		},
	}
}

func progressLine(w io.Writer, s canary.State, interval time.Duration) {
	line := fmt.Sprintf("%s  %s  %s", time.Now().Format(time.TimeOnly), s.Split, s.Phase)
	if r := s.LastReading; r != nil {
		line += "  gate " + readingText(r)
	}
	if s.Phase == canary.PhaseProgressing {
		line += fmt.Sprintf("  (next step in %v)", interval)
	}
	if s.Message != "" {
		line += "  " + s.Message
	}
	fmt.Fprintln(w, line)
}

func readingText(r *canary.Reading) string {
	parts := []string{string(r.Verdict), fmt.Sprintf("requests=%.0f", r.Requests)}
	if !math.IsNaN(r.SuccessRate) {
		parts = append(parts, fmt.Sprintf("success=%.2f%%", 100*r.SuccessRate))
	}
	if !math.IsNaN(r.LatencyP99Millis) {
		parts = append(parts, fmt.Sprintf("p99=%.1fms", r.LatencyP99Millis))
	}
	if r.Reason != "" {
		parts = append(parts, "("+r.Reason+")")
	}
	return strings.Join(parts, " ")
}

func printCanary(w io.Writer, format string, st canary.Status) error {
	switch format {
	case "json", "yaml":
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		if format == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
		}
		_, err = fmt.Fprintln(w, strings.TrimRight(string(b), "\n"))
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tNAMESPACE\tSTABLE\tCANARY\tPHASE\tSTEP\tGATE")
	step := "-"
	if st.Step >= 0 && st.Step < len(st.Steps) {
		step = fmt.Sprintf("%d/%d", st.Step+1, len(st.Steps))
	}
	gate := "none"
	switch {
	case st.Reading != nil:
		gate = readingText(st.Reading)
	case st.GateError != "":
		gate = "error: " + st.GateError
	case st.LastReading != nil:
		gate = "last: " + readingText(st.LastReading)
	case st.Gate != nil:
		gate = "not read yet"
	}
	fmt.Fprintf(tw, "%s\t%s\t%s %d%%\t%s %d%%\t%s\t%s\t%s\n", st.Service, st.Namespace,
		st.StableSubset, st.Split.Stable, st.CanarySubset, st.Split.Canary, st.Phase, step, gate)
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.Live != nil && *st.Live != st.Split {
		fmt.Fprintf(w, "warning: VirtualService %s routes %s now, not %s: someone edited its weights; run step, promote or rollback to set them again\n", st.VirtualService, st.Live, st.Split)
	}
	if st.Message != "" {
		fmt.Fprintf(w, "%s\n", st.Message)
	}
	return nil
}
