// Package manifests embeds the templates the operator renders: Istio's own
// Helm charts (base, istio-discovery, gateway), copied unmodified from the
// Istio release by `make istio-charts`, and meshfleet's chart (mesh) with the
// objects Istio's charts do not cover.
package manifests

import "embed"

// Charts holds every chart under charts/, one directory per chart.
//
//go:embed all:charts
var Charts embed.FS
