// Package e2e holds end-to-end tests that run real etcd, kube-apiserver,
// istiod and gRPC servers and clients together, inside a network namespace
// of the test binary's own (see internal/netns), so that workloads can use
// addresses from 198.18.0.0/15.
//
// Run them with `make e2e`, or after `make tools`:
//
//	go test -tags e2e -p 1 -v ./tests/e2e/...
package e2e
