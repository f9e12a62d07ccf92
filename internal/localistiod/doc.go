// Package localistiod runs a real istiod (Istio's pilot-discovery binary)
// on this machine, outside any cluster, against a Kubernetes API server such
// as one started by internal/localcluster.
//
// istiod listens only on 127.0.0.1 (ports chosen free at start): plain-text
// xDS on GRPCAddr (what proxyless gRPC clients and Envoy without mTLS dial),
// its HTTP debug/readiness server on HTTPAddr and Prometheus metrics on
// MonitoringAddr. The pieces that need a real cluster network are switched
// off: the sidecar injector and validation webhooks and their HTTPS server,
// the mTLS xDS port, and the CA server.
//
// Typical use:
//
//	if err := localistiod.InstallCRDs(ctx, cluster.Config); err != nil { ... }
//	d, err := localistiod.Start(ctx, localistiod.Options{
//		Kubeconfig: cluster.Kubeconfig,
//		Dir:        filepath.Join(dir, "istiod"),
//		ClusterID:  "primary",
//		MeshConfig: "localityLbSetting: {enabled: true}\n",
//	})
//	defer d.Stop()
//	// dial d.GRPCAddr
//
// The process gets its own process group, writes its output to
// <Dir>/istiod.log and (on Linux) is killed by the kernel if the process that
// started it dies. Stop kills the whole group and waits for it.
//
// The package is shared by tests and by the CLI, so it must not import
// "testing".
package localistiod
