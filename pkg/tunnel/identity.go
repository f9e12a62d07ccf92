package tunnel

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/meshfleet/meshfleet/pkg/ca"
)

const (
	agentCommonName = "meshfleet tunnel agent"
	// agentURIPrefix starts the URI SAN of an agent certificate; the cluster
	// name follows.
	agentURIPrefix = "spiffe://meshfleet.io/tunnel/agent/"
)

var clusterNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// validateClusterName checks that cluster is a DNS label, as the tunnel puts
// it into URLs, certificates and metric labels.
func validateClusterName(cluster string) error {
	if !clusterNameRE.MatchString(cluster) {
		return fmt.Errorf("cluster name %q is not a DNS label (lower-case letters, digits and '-', at most 63)", cluster)
	}
	return nil
}

// AgentIdentityURI is the URI SAN that identifies the tunnel agent of cluster:
// spiffe://meshfleet.io/tunnel/agent/<cluster>. Workload certificates issued
// by a cluster's Istio CA never carry it, so they cannot pass as agents.
func AgentIdentityURI(cluster string) *url.URL {
	u, _ := url.Parse(agentURIPrefix + cluster)
	return u
}

// agentClusterOf returns the cluster named by the agent identity URI SAN of
// leaf.
func agentClusterOf(leaf *x509.Certificate) (string, error) {
	var found []string
	for _, u := range leaf.URIs {
		if s := u.String(); strings.HasPrefix(s, agentURIPrefix) {
			found = append(found, strings.TrimPrefix(s, agentURIPrefix))
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("certificate %q is not a tunnel agent certificate: it has no URI SAN %s<cluster> (issue one with tunnel.IssueAgentCertificate)", leaf.Subject.CommonName, agentURIPrefix)
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("certificate %q names several clusters %v; an agent certificate must name exactly one", leaf.Subject.CommonName, found)
	}
}

// verifyAgentChains checks that the verified chains of an agent's client
// certificate identify the agent of cluster: the leaf's identity URI names
// cluster, and every intermediate CA in the chain that belongs to a cluster
// (ca.ClusterOf) belongs to that same cluster.
func verifyAgentChains(chains [][]*x509.Certificate, cluster string) error {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return errors.New("no verified client certificate: the agent must present a certificate chaining to the mesh root")
	}
	if err := validateClusterName(cluster); err != nil {
		return fmt.Errorf("header %s: %w", headerCluster, err)
	}
	leaf := chains[0][0]
	certCluster, err := agentClusterOf(leaf)
	if err != nil {
		return err
	}
	if certCluster != cluster {
		return fmt.Errorf("agent claims cluster %q but its certificate is for cluster %q: fix the agent's cluster name or give it cluster %q's certificate", cluster, certCluster, cluster)
	}
	for _, chain := range chains {
		for _, c := range chain[1:] {
			if other := ca.ClusterOf(c); other != "" && other != cluster {
				return fmt.Errorf("agent certificate for cluster %q is signed by the intermediate CA of cluster %q; issue it from cluster %q's intermediate", cluster, other, cluster)
			}
		}
	}
	return nil
}
