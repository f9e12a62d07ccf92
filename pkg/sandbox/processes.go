package sandbox

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/rest"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/pkg/operator"
)

// startCluster starts a cluster's own etcd and its kube-apiserver, and
// registers both as components (etcd/<name>, apiserver/<name>). With
// fakeNodes (the primary) it also runs kube-controller-manager's
// controllers, kube-scheduler and kwok, so the Deployments the operator
// renders roll out as on a cluster.
func (s *Sandbox) startCluster(ctx context.Context, bins localcluster.Binaries, name string, aggregation, fakeNodes bool) error {
	dir := filepath.Join(s.Dir, name)
	etcd, err := localcluster.StartEtcd(ctx, filepath.Join(dir, "etcd"), bins.Etcd)
	if err != nil {
		return err
	}
	s.Etcds[name] = etcd
	opts := localcluster.ClusterOptions{Name: name, Dir: dir}
	if aggregation {
		opts.ControllerManager, opts.Controllers = true, localcluster.AggregationControllers
	}
	if fakeNodes {
		opts.ControllerManager, opts.FakeNodes = true, true
		opts.Controllers = append(slices.Clone(localcluster.RolloutControllers), opts.Controllers...)
	}
	c, err := localcluster.StartCluster(ctx, etcd, bins, opts)
	if err != nil {
		return err
	}
	s.Clusters = append(s.Clusters, c)
	s.comps.add(&component{name: ComponentEtcd + "/" + name, kill: etcd.Kill, start: etcd.Restart,
		detail: func() string { return etcd.Endpoint }})
	s.comps.add(&component{name: ComponentAPIServer + "/" + name, kill: c.KillAPIServer, start: c.StartAPIServer,
		detail: func() string { return c.URL }})
	return nil
}

// startOperator runs the operator in this process and registers it as the
// component "operator"; a restart builds a new manager, as a new pod would.
func (s *Sandbox) startOperator(cfg *rest.Config, opts operator.Options) error {
	p := &inproc{}
	start := func(context.Context) error {
		mgr, err := operator.New(cfg, opts)
		if err != nil {
			return err
		}
		p.run(func(ctx context.Context) { _ = mgr.Start(ctx) })
		return nil
	}
	if err := start(context.Background()); err != nil {
		return err
	}
	s.stops = append(s.stops, p.stop)
	s.comps.add(&component{name: ComponentOperator, start: start, kill: func() error { p.stop(); return nil }})
	return nil
}

// addLocality starts the locality server on ln (startLocality) and
// registers it as the component "locality": a restart listens on the same
// address again, so istiod's config source stays valid.
func (s *Sandbox) addLocality(ctx context.Context, ln net.Listener, namespace, logPath string) error {
	p := &inproc{}
	run := func(ctx context.Context, ln net.Listener) error {
		started := make(chan error, 1)
		p.run(func(runCtx context.Context) {
			err := s.startLocality(runCtx, ln, namespace, logPath)
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
	s.stops = append(s.stops, p.stop)
	s.comps.add(&component{name: ComponentLocality, kill: func() error { p.stop(); return nil },
		detail: func() string { return "debug http://" + s.XDSAddr },
		start: func(ctx context.Context) error {
			ln, err := listenAgain(ctx, s.XDSAddr)
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
