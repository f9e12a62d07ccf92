// Package ca holds the mesh's certificate authority logic: creating or loading
// the root CA that stays in the primary cluster, issuing one intermediate CA per
// cluster as Istio's plug-in CA Secret "cacerts", and deciding when an existing
// cacerts must be reissued.
//
// Everything here is a pure function on crypto/x509: there is no Kubernetes
// I/O, and the current time is always passed in, never read from the clock.
package ca
