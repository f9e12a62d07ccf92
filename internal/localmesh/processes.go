package localmesh

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/meshfleet/meshfleet/internal/localcluster"
)

// startCluster starts a cluster's own etcd and its kube-apiserver, and
// registers both as components (etcd/<name>, apiserver/<name>).
func (m *Mesh) startCluster(ctx context.Context, bins localcluster.Binaries, opts localcluster.ClusterOptions) error {
	etcd, err := localcluster.StartEtcd(ctx, filepath.Join(opts.Dir, "etcd"), bins.Etcd)
	if err != nil {
		return err
	}
	m.Etcds[opts.Name] = etcd
	c, err := localcluster.StartCluster(ctx, etcd, bins, opts)
	if err != nil {
		return err
	}
	m.Clusters = append(m.Clusters, c)
	m.comps.add(&component{name: ComponentEtcd + "/" + opts.Name, kill: etcd.Kill, start: etcd.Restart,
		detail: func() string { return etcd.Endpoint }})
	m.comps.add(&component{name: ComponentAPIServer + "/" + opts.Name, kill: c.KillAPIServer, start: c.StartAPIServer,
		detail: func() string { return c.URL }})
	return nil
}

// addLocality starts the locality server on ln (startLocality) and
// registers it as the component "locality": a restart listens on the same
// address again, so istiod's config source stays valid.
func (m *Mesh) addLocality(ctx context.Context, ln net.Listener, namespace, logPath string) error {
	p := &inproc{}
	run := func(ctx context.Context, ln net.Listener) error {
		started := make(chan error, 1)
		p.run(func(runCtx context.Context) {
			err := m.startLocality(runCtx, ln, namespace, logPath)
			started <- err
			if err == nil {
				<-runCtx.Done()
			}
		})
		select {
		case err := <-started:
			if err != nil {
				p.stop()
			}
			return err
		case <-ctx.Done():
			p.stop()
			return ctx.Err()
		}
	}
	if err := run(ctx, ln); err != nil {
		return err
	}
	m.stops = append(m.stops, p.stop)
	m.comps.add(&component{name: ComponentLocality, kill: func() error { p.stop(); return nil },
		detail: func() string { return "debug http://" + m.XDSAddr },
		start: func(ctx context.Context) error {
			ln, err := listenAgain(ctx, m.XDSAddr)
			if err != nil {
				return err
			}
			return run(ctx, ln)
		}})
	return nil
}

// listenAgain listens on addr, retrying for a few seconds while the
// previous listener there is still closing.
func listenAgain(ctx context.Context, addr string) (net.Listener, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("listen on %s again: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
