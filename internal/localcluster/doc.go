// Package localcluster runs real etcd, kube-apiserver and (optionally)
// kube-controller-manager processes on this machine, without containers.
//
// One etcd can back several clusters: each kube-apiserver gets its own
// --etcd-prefix=/<name> and its own HTTPS port on 127.0.0.1, so the clusters
// are isolated from each other while sharing a single etcd process.
//
// Typical use:
//
//	bins, err := localcluster.DefaultBinaries()
//	etcd, err := localcluster.StartEtcd(ctx, dir, bins.Etcd)
//	defer etcd.Stop()
//	c, err := localcluster.StartCluster(ctx, etcd, bins, localcluster.ClusterOptions{
//		Name: "primary",
//		Dir:  filepath.Join(dir, "primary"),
//	})
//	defer c.Stop()
//	client := kubernetes.NewForConfigOrDie(c.Config)
//
// Every process is started in its own process group, writes its output to a
// log file under its directory, and (on Linux) is killed by the kernel if the
// process that started it dies. Stop kills the whole process group and waits
// for it, so nothing is left behind.
//
// The context passed to StartEtcd and StartCluster bounds only the start-up
// (waiting for readiness); the processes keep running until Stop is called.
//
// The package is shared by tests and by the CLI, so it must not import
// "testing".
package localcluster
