//go:build integration

package localistiod_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/internal/localistiod"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// TestStartStop installs the CRDs (twice: applying is idempotent), starts
// istiod against a real API server, kills and restarts it on the same
// ports, and checks that Stop leaves nothing listening.
func TestStartStop(t *testing.T) {
	env := testenv.Start(t, localcluster.ClusterOptions{Name: "c1"})
	c := env.Cluster("c1")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for range 2 {
		if err := localistiod.InstallCRDs(ctx, c.Config); err != nil {
			t.Fatal(err)
		}
	}
	d, err := localistiod.Start(ctx, localistiod.Options{
		Kubeconfig: c.Kubeconfig,
		Dir:        filepath.Join(env.Dir, "istiod"),
		ClusterID:  "c1",
		MeshConfig: "localityLbSetting: {enabled: true}\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", d.GRPCAddr, 2*time.Second)
	if err != nil {
		t.Fatalf("dialing istiod's xDS port: %v", err)
	}
	conn.Close()

	// Kill and Restart: same ports, ready again.
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	if d.Running() {
		t.Fatal("istiod still running after Kill")
	}
	if err := d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if conn, err = net.DialTimeout("tcp", d.GRPCAddr, 2*time.Second); err != nil {
		t.Fatalf("dialing istiod's xDS port after Restart: %v", err)
	}
	conn.Close()
	if err := d.Restart(ctx); err == nil {
		t.Error("Restart of a running istiod did not fail")
	}

	start := time.Now()
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("istiod stopped in %v", time.Since(start).Round(time.Millisecond))
	if err := d.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", d.GRPCAddr, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Stop", d.GRPCAddr)
	}
}
