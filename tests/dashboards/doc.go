// Package dashboards checks meshfleet's Grafana dashboards against a real
// Prometheus (Debian's prometheus package) scraping real meshfleet
// components, and holds the helpers other end-to-end tests share: a
// Prometheus process (StartPrometheus) and an exporter of Istio's standard
// request metrics for proxyless gRPC test apps, which have no Envoy to
// report them (MeshMetrics).
//
// Run the dashboard test with `make tools prometheus`, then
//
//	go test -tags integration -v ./tests/dashboards/
package dashboards
