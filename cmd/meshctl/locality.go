package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/check"
)

// localityState is the locality server's /debug/locality answer
// (rulesync.DebugState), kept generic so that every field the server sends
// is printed by -o json|yaml as it came.
type localityState struct {
	Leader     bool             `json:"leader"`
	Namespace  string           `json:"namespace,omitempty"`
	Rules      int              `json:"rules"`
	Members    []localityMember `json:"members,omitempty"`
	Held       []string         `json:"held,omitempty"`
	HeldReason string           `json:"heldReason,omitempty"`
	Conflicts  []string         `json:"conflicts,omitempty"`
	Error      string           `json:"error,omitempty"`
	LastWrite  *time.Time       `json:"lastWrite,omitempty"`
	// DuplicateLocality: services a proxyless gRPC client cannot use.
	DuplicateLocality []localityProblem  `json:"duplicateLocality,omitempty"`
	Decisions         []localityDecision `json:"decisions"`
}

type localityProblem struct {
	Service  string   `json:"service"`
	Problems []string `json:"problems"`
}

type localityMember struct {
	Name   string `json:"name"`
	Synced bool   `json:"synced"`
}

type localityDecision struct {
	Service  string         `json:"service"`
	Host     string         `json:"host"`
	Rule     map[string]any `json:"rule,omitempty"`
	Skipped  string         `json:"skipped,omitempty"`
	Reasons  []string       `json:"reasons,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
	// DuplicateLocalities: localities istiod sends twice for this host.
	DuplicateLocalities []string `json:"duplicateLocalities,omitempty"`
}

func newLocalityCommand(g *globals) *cobra.Command {
	var debugURL string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "locality [SERVICE]",
		Short: "Show the locality server's generated DestinationRules per service, and why",
		Long: `Reads the locality server's debug endpoint (meshfleet locality --debug-addr,
path /debug/locality) and prints whether this replica writes the rules (it
holds the Lease), the member clusters and any not synced since start, rules
held or in conflict; then, per service, the generated locality policy (failover
targets, outlier detection) and the reasons for it: the failover order and where
it came from (the Istio resource, measured RTT, the default order), or why nothing
was generated (a user DestinationRule, an annotation, no endpoints; every
reason that applies). Warnings name settings istiod ignores (a user
DestinationRule in a remote cluster: istiod reads them only from the
primary, so the rule is still generated; a traffic distribution set on
another cluster's copy of the Service than the one istiod uses). Services
whose endpoints give istiod one locality twice (a pod locality label and
a Node's labels) are listed first as proxyless gRPC hazards, with the fix.

SERVICE is namespace/name, or a name matched in every namespace.`,
		Example: `  meshctl locality --xds-debug http://localhost:9092
  meshctl locality shop/cart --xds-debug http://meshfleet-locality.meshfleet-system:9092 -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			// Unless given, the address the kubeconfig carries (the
			// sandbox writes it), else a port-forward's.
			e, err := g.endpoints(check.Endpoints{LocalityDebug: debugURL})
			if err != nil {
				return err
			}
			debugURL = e.Or(check.Endpoints{LocalityDebug: "http://localhost:9092"}).LocalityDebug
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			st, err := fetchLocality(ctx, debugURL, args)
			if err != nil {
				return err
			}
			return printLocality(cmd.OutOrStdout(), g.output, st)
		},
	}
	cmd.Flags().StringVar(&debugURL, "xds-debug", "", "URL of the locality server's debug address (meshfleet locality --debug-addr); default: the kubeconfig's "+check.EndpointsExtension+" extension, else http://localhost:9092")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the locality server")
	return cmd
}

// fetchLocality reads the debug state and narrows it to the service given.
func fetchLocality(ctx context.Context, base string, args []string) (*localityState, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, &exitError{exitUsage, fmt.Errorf("--xds-debug %q: give the debug address as a URL, e.g. http://localhost:9092", base)}
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/debug/locality"
	}
	service := ""
	if len(args) == 1 {
		service = args[0]
		if strings.Contains(service, "/") {
			q := u.Query()
			q.Set("service", service)
			u.RawQuery = q.Encode()
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the locality server at %s: %w; check --xds-debug (meshfleet locality --debug-addr, e.g. kubectl port-forward to it)", u.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(body)))
	}
	st := &localityState{}
	if err := yaml.Unmarshal(body, st); err != nil {
		return nil, fmt.Errorf("%s did not answer with the locality server's debug state: %w", u.Redacted(), err)
	}
	if service != "" && !strings.Contains(service, "/") {
		var keep []localityDecision
		for _, d := range st.Decisions {
			if _, name, _ := strings.Cut(d.Service, "/"); name == service {
				keep = append(keep, d)
			}
		}
		if len(keep) == 0 {
			return nil, fmt.Errorf("no service named %s in any member cluster (the locality server knows %d services); give namespace/name", service, len(st.Decisions))
		}
		st.Decisions = keep
		var problems []localityProblem
		for _, d := range keep {
			if len(d.DuplicateLocalities) > 0 {
				problems = append(problems, localityProblem{Service: d.Service, Problems: d.DuplicateLocalities})
			}
		}
		st.DuplicateLocality = problems
	}
	return st, nil
}

func printLocality(w io.Writer, format string, st *localityState) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	case "yaml":
		b, err := yaml.Marshal(st)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	role := "standby (another replica writes)"
	if st.Leader {
		role = "writing"
	}
	fmt.Fprintf(w, "%s; %d rules in namespace %s of the primary\n", role, st.Rules, dash(st.Namespace))
	var members, unsynced []string
	for _, m := range st.Members {
		members = append(members, m.Name)
		if !m.Synced {
			unsynced = append(unsynced, m.Name)
		}
	}
	fmt.Fprintf(w, "member clusters: %s\n", dash(strings.Join(members, ", ")))
	if len(unsynced) > 0 {
		fmt.Fprintf(w, "not synced since start (unreachable or slow): %s; the rules written stay as they are until they sync\n", strings.Join(unsynced, ", "))
	}
	if len(st.Held) > 0 {
		fmt.Fprintf(w, "%d rules held as they are: %s\n", len(st.Held), st.HeldReason)
	}
	for _, c := range st.Conflicts {
		fmt.Fprintf(w, "conflict: %s\n", c)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "last translation failed (the rules written stay as they are): %s\n", st.Error)
	}
	for _, p := range st.DuplicateLocality {
		fmt.Fprintf(w, "proxyless gRPC hazard: %s: istiod sends one locality twice in its EDS responses, proxyless gRPC clients reject them (see below)\n", p.Service)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tRULE\tFAILOVER\tOUTLIER DETECTION")
	for _, d := range st.Decisions {
		name, _ := nested(d.Rule, "metadata", "name").(string)
		if d.Skipped != "" { // no rule, or an empty one that shields it from its namespace's rule
			fmt.Fprintf(tw, "%s\t%s\tskipped\t-\n", d.Service, dash(name))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Service, dash(name), failoverSummary(d.Rule), outlierSummary(d.Rule))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range st.Decisions {
		fmt.Fprintf(w, "\n%s (%s)\n", d.Service, d.Host)
		if d.Skipped != "" {
			fmt.Fprintf(w, "  skipped: %s\n", d.Skipped)
		}
		for _, r := range d.Reasons {
			fmt.Fprintf(w, "  why: %s\n", r)
		}
		for _, x := range d.Warnings {
			fmt.Fprintf(w, "  warning: %s\n", x)
		}
		for _, x := range d.DuplicateLocalities {
			fmt.Fprintf(w, "  proxyless gRPC hazard: %s\n", x)
		}
	}
	return nil
}

// failoverSummary is "r1→r2, r2→r1", "priority [labels]", or "locality off".
func failoverSummary(rule map[string]any) string {
	lb, _ := nested(rule, "spec", "trafficPolicy", "loadBalancer", "localityLbSetting").(map[string]any)
	if lb == nil {
		return "none (outlier detection only)"
	}
	var parts []string
	if fs, ok := lb["failover"].([]any); ok {
		for _, f := range fs {
			if m, ok := f.(map[string]any); ok {
				parts = append(parts, fmt.Sprintf("%v→%v", m["from"], m["to"]))
			}
		}
	}
	if fp, ok := lb["failoverPriority"].([]any); ok && len(fp) > 0 {
		var labels []string
		for _, l := range fp {
			labels = append(labels, fmt.Sprint(l))
		}
		parts = append(parts, "priority "+strings.Join(labels, ","))
	}
	if len(parts) == 0 {
		if e, ok := lb["enabled"].(bool); ok && !e {
			return "disabled"
		}
		return "zone, region (no other region)"
	}
	return strings.Join(parts, ", ")
}

func outlierSummary(rule map[string]any) string {
	od, _ := nested(rule, "spec", "trafficPolicy", "outlierDetection").(map[string]any)
	if od == nil {
		return "-"
	}
	keys := make([]string, 0, len(od))
	for k := range od {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, od[k]))
	}
	return strings.Join(parts, " ")
}

func nested(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}
