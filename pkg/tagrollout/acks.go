package tagrollout

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ProxySync is one proxy's entry in istiod's per-proxy sync state (the
// JSON of /debug/syncz, the same as the xDS debug type
// istio.io/debug/syncz that istioctl x proxy-status reads): which config
// istiod sent it, per type, and what it answered last.
type ProxySync struct {
	// ProxyID names the proxy as istiod does: <pod>.<namespace> from its
	// node ID (sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local).
	ProxyID string `json:"proxy"`
	// ClusterID is the cluster the proxy says it runs in (CLUSTER_ID).
	ClusterID string `json:"cluster_id"`
	// Resources is the state per xDS type URL.
	Resources map[string]ResourceSync `json:"resources"`
}

// ResourceSync is the state of one xDS type of one proxy: the nonce of the
// latest response istiod sent, the nonce the proxy last ACKed, and the
// error of its NACK when its latest answer was one (istiod clears it on
// the next ACK).
type ResourceSync struct {
	Sent      string `json:"sent"`
	Acked     string `json:"acked"`
	LastError string `json:"lastError"`
}

// ParseSyncz reads istiod's /debug/syncz answer.
func ParseSyncz(b []byte) ([]ProxySync, error) {
	var out []ProxySync
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("istiod's sync state (/debug/syncz) is not the JSON list of proxies expected: %w", err)
	}
	return out, nil
}

// Acks is what the proxies of a batch's clusters told the new revision.
type Acks struct {
	// Proxies connected to the revision from the batch's clusters; Acked:
	// how many of them ACKed the latest response of every type; Nacked: how
	// many answered a type's latest response with a NACK.
	Proxies, Acked, Nacked int
	// Nack names the first proxy that NACKed (by node ID), the type and the
	// proxy's error message, "" when none did.
	Nack string
}

// ObserveAcks judges istiod's sync state for the proxies in clusters (by
// the cluster ID they report; all of them when clusters is empty). A proxy
// has ACKed when, for every type istiod sent it, the nonce it ACKed last
// is the nonce sent last; it has NACKed when its latest answer to any type
// was a NACK.
func ObserveAcks(proxies []ProxySync, clusters []string) Acks {
	var a Acks
	sort.Slice(proxies, func(i, j int) bool { return proxies[i].ProxyID < proxies[j].ProxyID })
	for _, p := range proxies {
		if len(clusters) > 0 && !slices.Contains(clusters, p.ClusterID) {
			continue
		}
		a.Proxies++
		types := make([]string, 0, len(p.Resources))
		for t := range p.Resources {
			types = append(types, t)
		}
		sort.Strings(types)
		sent, acked, nacked := false, true, false
		for _, t := range types {
			r := p.Resources[t]
			if r.LastError != "" {
				nacked = true
				if a.Nack == "" {
					a.Nack = fmt.Sprintf("proxy %s (cluster %s) NACKed %s: %s", p.ProxyID, p.ClusterID, shortType(t), clip(r.LastError))
				}
			}
			if r.Sent == "" {
				continue // subscribed, nothing sent yet: nothing to ACK
			}
			sent = true
			acked = acked && r.Acked == r.Sent
		}
		switch {
		case nacked:
			a.Nacked++
		case sent && acked:
			a.Acked++
		}
	}
	return a
}

// maxNackMessage bounds a NACK's message in a reason (grpc-go quotes the
// whole rejected resource).
const maxNackMessage = 300

func clip(msg string) string {
	if r := []rune(msg); len(r) > maxNackMessage {
		return string(r[:maxNackMessage]) + "…"
	}
	return msg
}

// shortType is the last part of an xDS type URL
// (type.googleapis.com/envoy.config.listener.v3.Listener -> Listener).
func shortType(url string) string {
	return url[strings.LastIndex(url, ".")+1:]
}
