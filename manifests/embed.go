// Package manifests embeds the templates the operator renders: Istio's own
// Helm charts (base, istio-discovery, gateway), copied unmodified from the
// Istio release by `make istio-charts`, and meshfleet's chart (mesh) with the
// objects Istio's charts do not cover; and the operator's own manifests.
package manifests

import "embed"

// Charts holds every chart under charts/, one directory per chart.
//
//go:embed all:charts
var Charts embed.FS

// Operator holds the operator's in-cluster manifests: operator.yaml and the
// generated rbac/role.yaml.
//
//go:embed operator/operator.yaml operator/rbac/role.yaml
var Operator embed.FS

// Tunnel holds the tunnel server's and agent's manifests.
//
//go:embed tunnel/*.yaml
var Tunnel embed.FS
