package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/check"
	"github.com/meshfleet/meshfleet/pkg/locality/health"
	"github.com/meshfleet/meshfleet/pkg/render"
	"github.com/meshfleet/meshfleet/pkg/tagrollout"
)

// clusterStatus is one cluster of the mesh, as status and list print it.
type clusterStatus struct {
	Name        string        `json:"name"`
	Role        string        `json:"role"`
	ClusterName string        `json:"clusterName"`
	Phase       v1beta1.Phase `json:"phase"`
	Connection  string        `json:"connection,omitempty"`
	Version     string        `json:"version,omitempty"`
	Kubernetes  string        `json:"kubernetes,omitempty"`
	Network     string        `json:"network,omitempty"`
	CAExpiry    *metav1.Time  `json:"caExpiry,omitempty"`
	// CAMode is where the mesh's root comes from (SelfSigned, UserSecret,
	// External); CAWarnings are the operator's warnings about this
	// cluster's intermediate (External mode: expiry near, constraints
	// missing), shown but not counted as problems.
	CAMode     string         `json:"caMode,omitempty"`
	CAWarnings []string       `json:"caWarnings,omitempty"`
	Gateways   []string       `json:"gateways,omitempty"`
	Localities map[string]int `json:"localities,omitempty"`
	// Locality is the locality server's health (primaries with
	// spec.localityLB.enabled, in status only).
	Locality *health.Verdict `json:"locality,omitempty"`
	// Istiod is how istiod itself reports the cluster (its
	// /debug/clusterz: synced, syncing, timeout, closed, or absent), in
	// status only, when istiod's debug address is known.
	Istiod string `json:"istiod,omitempty"`
	// Agents and RTT are the tunnel server's connected agents and the
	// smallest RTT to them (tunnelled remotes, in status only).
	Agents *int   `json:"agents,omitempty"`
	RTT    string `json:"rtt,omitempty"`
	// Revisions are the istiod revisions (RevisionBased), one line each:
	// on a primary with tags, pods in every cluster and what an old
	// revision's removal waits for; on a remote, its own pods per revision.
	Revisions []string `json:"revisions,omitempty"`
	// Rollout is the fleet rollout's table (status.rollout), primary only.
	Rollout  string   `json:"rollout,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

func newListCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the clusters of the mesh with their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			clusters, err := gather(cmd, g, false)
			if err != nil {
				return err
			}
			return printClusters(cmd.OutOrStdout(), g.output, clusters, false)
		},
	}
}

func newStatusCommand(g *globals) *cobra.Command {
	var eps endpointFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every cluster of the mesh: connection, version, CA, gateways, localities, problems and their fixes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			clusters, err := gather(cmd, g, true)
			if err != nil {
				return err
			}
			e, err := g.endpoints(eps.Endpoints)
			if err != nil {
				return err
			}
			componentViews(cmd.Context(), e, clusters)
			if err := printClusters(cmd.OutOrStdout(), g.output, clusters, true); err != nil {
				return err
			}
			for _, c := range clusters {
				if len(c.Problems) > 0 {
					return &exitError{exitFailure, fmt.Errorf("%d cluster(s) have problems", countProblems(clusters))}
				}
			}
			return nil
		},
	}
	eps.add(cmd, false)
	return cmd
}

// componentViews adds istiod's own view of each cluster and the tunnel
// server's agents and RTT, where their addresses are known.
func componentViews(ctx context.Context, e check.Endpoints, clusters []clusterStatus) {
	web := &http.Client{Timeout: 10 * time.Second}
	if e.IstiodDebug != "" {
		iv := check.IstiodClusters(ctx, web, e.IstiodDebug)
		seen := map[string]string{}
		for _, c := range iv.Value {
			seen[c.ID] = c.SyncStatus
		}
		for i := range clusters {
			c := &clusters[i]
			switch st, found := seen[c.ClusterName]; {
			case iv.Err != "":
				c.Istiod = "unknown: " + iv.Err
			case found:
				c.Istiod = st
				if st != "synced" {
					c.Problems = append(c.Problems, fmt.Sprintf("istiod reports cluster %s as %s: it cannot list its services and endpoints", c.ClusterName, st))
				}
			case c.Role == "remote":
				c.Istiod = "absent"
				c.Problems = append(c.Problems, fmt.Sprintf("istiod has no remote secret for cluster %s: it sends no endpoints of it", c.ClusterName))
			}
		}
	}
	if e.TunnelMetrics == "" {
		return
	}
	tv := check.ReadTunnel(ctx, web, e.TunnelMetrics)
	for i := range clusters {
		c := &clusters[i]
		if c.Connection != v1beta1.ConnectionTunnel || tv.Err != "" || !tv.Value.Active {
			continue
		}
		n := tv.Value.Agents[c.ClusterName]
		c.Agents = &n
		var best time.Duration
		for _, d := range tv.Value.RTT[c.ClusterName] {
			if best == 0 || d < best {
				best = d
			}
		}
		if best > 0 {
			c.RTT = best.Round(10 * time.Microsecond).String()
		}
		if n == 0 {
			c.Problems = append(c.Problems, fmt.Sprintf("no tunnel agent of cluster %s is connected; meshctl cluster join %s --tunnel prints its manifest", c.ClusterName, c.ClusterName))
		}
	}
}

func countProblems(cs []clusterStatus) int {
	n := 0
	for _, c := range cs {
		if len(c.Problems) > 0 {
			n++
		}
	}
	return n
}

// gather reads the Istio and RemoteIstio resources and, with detail, each
// cluster's gateways and node localities.
func gather(cmd *cobra.Command, g *globals, detail bool) ([]clusterStatus, error) {
	ctx := cmd.Context()
	c, cfg, err := g.client()
	if err != nil {
		return nil, err
	}
	var istios v1beta1.IstioList
	if err := c.List(ctx, &istios, client.InNamespace(g.namespace)); err != nil {
		return nil, fmt.Errorf("list Istio resources in %s: %w (is meshfleet installed? meshctl install)", g.namespace, err)
	}
	var remotes v1beta1.RemoteIstioList
	if err := c.List(ctx, &remotes, client.InNamespace(g.namespace)); err != nil {
		return nil, fmt.Errorf("list RemoteIstio resources in %s: %w", g.namespace, err)
	}
	var out []clusterStatus
	for _, ist := range istios.Items {
		cs := clusterStatus{Name: ist.Name, Role: "primary", ClusterName: ist.Status.ClusterName, Phase: ist.Status.Phase,
			Version: ist.Status.Version, Network: ist.Spec.Network, Problems: check.Problems(ist.Status.Conditions)}
		certificates(&cs, ist.Status.Certificates)
		cs.Revisions = revisionLines(ist.Status.Revisions)
		cs.Rollout = tagrollout.StatusTable(ist.Status.Rollout)
		if detail {
			describe(ctx, c, &cs)
			if ist.Spec.LocalityLB.Enabled {
				localityHealth(ctx, cfg, g.namespace, &cs)
			}
		}
		out = append(out, cs)
	}
	for _, ri := range remotes.Items {
		cs := clusterStatus{Name: ri.Name, Role: "remote", ClusterName: ri.Status.ClusterName, Phase: ri.Status.Phase,
			Connection: ri.Status.Connection, Version: ri.Spec.Version, Kubernetes: ri.Status.KubernetesVersion,
			Network: ri.Spec.Network, Problems: check.Problems(ri.Status.Conditions)}
		certificates(&cs, ri.Status.Certificates)
		for _, rv := range ri.Status.Revisions {
			cs.Revisions = append(cs.Revisions, fmt.Sprintf("%s: %d pods", rv.Name, rv.Pods))
		}
		if detail && ri.Spec.KubeconfigSecretRef != nil {
			if rc, err := check.RemoteClient(ctx, c, g.namespace, ri.Spec.KubeconfigSecretRef.Name); err == nil {
				describe(ctx, rc, &cs)
			} else {
				cs.Problems = append(cs.Problems, err.Error())
			}
		}
		out = append(out, cs)
	}
	return out, nil
}

// revisionLines formats a primary's status.revisions for status.
func revisionLines(revs []v1beta1.RevisionStatus) []string {
	var out []string
	for _, rv := range revs {
		tags := rv.Tags
		if rv.Default {
			tags = append([]string{render.DefaultTag}, tags...)
		}
		line := fmt.Sprintf("%s (%s", rv.Name, rv.Version)
		if len(tags) > 0 {
			line += ", tags " + strings.Join(tags, ",")
		}
		line += fmt.Sprintf("): %d pods", rv.Pods)
		var per []string
		for _, c := range rv.Clusters {
			per = append(per, fmt.Sprintf("%s=%d", c.Cluster, c.Pods))
		}
		if len(per) > 0 {
			line += " [" + strings.Join(per, ", ") + "]"
		}
		if rv.Message != "" {
			line += "; " + rv.Message
		}
		out = append(out, line)
	}
	return out
}

// certificates copies a cluster's CA mode, intermediate expiry and warnings.
func certificates(cs *clusterStatus, st *v1beta1.CertificatesStatus) {
	if st == nil {
		return
	}
	cs.CAExpiry, cs.CAMode, cs.CAWarnings = st.IntermediateExpiry, st.Mode, st.Warnings
}

// localityHealth reads the summary the locality server's writer publishes
// in ns (health.ConfigMapName) with its Lease, and counts anything but a
// healthy, running server as a problem of the primary.
func localityHealth(ctx context.Context, cfg *rest.Config, ns string, cs *clusterStatus) {
	kube, err := kubernetes.NewForConfig(cfg)
	var v health.Verdict
	if err == nil {
		var s *health.Summary
		var l *health.Lease
		if s, l, err = health.Read(ctx, kube, ns); err == nil {
			v = health.Judge(s, l, time.Now())
		}
	}
	if err != nil {
		v = health.Verdict{State: health.StateDegraded, Line: err.Error()}
	}
	cs.Locality = &v
	switch v.State {
	case health.StateOK:
	case health.StateNotRunning:
		cs.Problems = append(cs.Problems, fmt.Sprintf("LocalityServer (not running): %s; check its pods: kubectl -n %s get pods -l app=meshfleet-locality", v.Line, ns))
	default:
		cs.Problems = append(cs.Problems, fmt.Sprintf("LocalityServer (degraded): %s; meshctl locality shows the details", v.Line))
	}
}

// describe adds the gateways' addresses (from the gateways' own namespace)
// and the localities of the nodes.
func describe(ctx context.Context, c client.Client, cs *clusterStatus) {
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs, client.InNamespace(render.GatewayNamespace), client.MatchingLabels{render.LabelManagedBy: render.ManagedByValue}); err == nil {
		for _, s := range svcs.Items {
			if !strings.Contains(s.Name, "gateway") {
				continue
			}
			addr := "<pending>"
			for _, in := range s.Status.LoadBalancer.Ingress {
				addr = in.IP + in.Hostname
			}
			cs.Gateways = append(cs.Gateways, s.Name+"="+addr)
		}
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err == nil {
		cs.Localities = map[string]int{}
		for _, n := range nodes.Items {
			region := firstLabel(n.Labels, "topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
			zone := firstLabel(n.Labels, "topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
			cs.Localities[region+"/"+zone]++
		}
	}
}

func firstLabel(l map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := l[k]; v != "" {
			return v
		}
	}
	return "-"
}

func printClusters(w io.Writer, format string, cs []clusterStatus, detail bool) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"clusters": cs})
	case "yaml":
		b, err := yaml.Marshal(map[string]any{"clusters": cs})
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tCLUSTER\tPHASE\tCONNECTION\tVERSION\tNETWORK")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Role, dash(c.ClusterName), dash(string(c.Phase)),
			dash(c.Connection), dash(c.Version), dash(c.Network))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !detail {
		return nil
	}
	for _, c := range cs {
		fmt.Fprintf(w, "\n%s (%s)\n", c.Name, c.Role)
		if c.CAMode != "" {
			fmt.Fprintf(w, "  CA mode                  %s\n", c.CAMode)
		}
		if c.CAExpiry != nil {
			fmt.Fprintf(w, "  intermediate CA expires  %s (in %s)\n", c.CAExpiry.UTC().Format(time.RFC3339), time.Until(c.CAExpiry.Time).Round(time.Minute))
		}
		for _, warning := range c.CAWarnings {
			fmt.Fprintf(w, "  warning: %s\n", warning)
		}
		if c.Istiod != "" {
			fmt.Fprintf(w, "  istiod's view            %s\n", c.Istiod)
		}
		for _, r := range c.Revisions {
			fmt.Fprintf(w, "  revision                 %s\n", r)
		}
		if c.Rollout != "" {
			fmt.Fprintf(w, "  rollout\n")
			for _, l := range strings.Split(strings.TrimRight(c.Rollout, "\n"), "\n") {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
		if c.Agents != nil {
			fmt.Fprintf(w, "  tunnel agents            %d connected, RTT %s\n", *c.Agents, dash(c.RTT))
		}
		if l := c.Locality; l != nil {
			state := l.State
			if state == health.StateOK {
				state = "OK"
			}
			fmt.Fprintf(w, "  locality server          %s: %s\n", state, l.Line)
		}
		if len(c.Gateways) > 0 {
			fmt.Fprintf(w, "  gateways                 %s\n", strings.Join(c.Gateways, ", "))
		}
		if len(c.Localities) > 0 {
			keys := make([]string, 0, len(c.Localities))
			for k := range c.Localities {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s (%d nodes)", k, c.Localities[k]))
			}
			fmt.Fprintf(w, "  localities               %s\n", strings.Join(parts, ", "))
		}
		for _, p := range c.Problems {
			fmt.Fprintf(w, "  problem: %s\n", p)
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
