//go:build integration

package localcluster

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestKillAndRestart kills kube-apiserver and etcd as a crash would and
// starts them again: same URL, same data.
func TestKillAndRestart(t *testing.T) {
	bins, err := DefaultBinaries()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	etcd, err := StartEtcd(ctx, filepath.Join(dir, "etcd"), bins.Etcd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Stop() })
	c, err := StartCluster(ctx, etcd, bins, ClusterOptions{Name: "restart", Dir: filepath.Join(dir, "restart")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	kube := kubernetes.NewForConfigOrDie(c.Config)
	create := func(name string) error {
		_, err := kube.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err
	}
	if err := create("before"); err != nil {
		t.Fatal(err)
	}
	url := c.URL

	if err := c.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	if c.APIServerRunning() {
		t.Fatal("kube-apiserver still running after KillAPIServer")
	}
	if _, err := kube.CoreV1().ConfigMaps("default").Get(ctx, "before", metav1.GetOptions{}); err == nil {
		t.Fatal("the API answered while kube-apiserver was killed")
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if c.URL != url || !c.APIServerRunning() {
		t.Fatalf("after StartAPIServer: URL %s (was %s), running %v", c.URL, url, c.APIServerRunning())
	}
	if _, err := kube.CoreV1().ConfigMaps("default").Get(ctx, "before", metav1.GetOptions{}); err != nil {
		t.Fatalf("data written before the kill: %v", err)
	}
	if err := c.StartAPIServer(ctx); err == nil {
		t.Error("StartAPIServer of a running kube-apiserver did not fail")
	}

	if err := etcd.Kill(); err != nil {
		t.Fatal(err)
	}
	if etcd.Running() {
		t.Fatal("etcd still running after Kill")
	}
	if err := etcd.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// kube-apiserver reconnects to etcd by itself.
	deadline := time.Now().Add(time.Minute)
	for err := create("after"); err != nil; err = create("after") {
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver did not write to the restarted etcd: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := kube.CoreV1().ConfigMaps("default").Get(ctx, "before", metav1.GetOptions{}); err != nil {
		t.Fatalf("data written before etcd was killed: %v", err)
	}
}
