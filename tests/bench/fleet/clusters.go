//go:build e2e

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/internal/localcluster"
	"github.com/meshfleet/meshfleet/tests/testenv"
)

// fleetOptions say how startFleet starts the clusters.
type fleetOptions struct {
	// etcdEach gives every cluster an etcd of its own; else one etcd holds
	// every cluster under its own key prefix.
	etcdEach bool
	// parallel is how many clusters start at once.
	parallel int
	// timeout bounds each cluster's start (its etcd, then its API server).
	timeout time.Duration
}

// startFleet starts a kube-apiserver per name (and an etcd per name, or one
// for all), opts.parallel at a time: 21 API servers starting at once on two
// cores starve each other (and a shared etcd) past any start timeout. The
// Env's Etcd is the first name's (or the shared one); stop stops every
// process and removes the directory unless testenv.KeepDirEnv is set.
func startFleet(ctx context.Context, names []string, opts fleetOptions) (*testenv.Env, func(), error) {
	dir, err := os.MkdirTemp("", "meshfleet-fleet-")
	if err != nil {
		return nil, nil, err
	}
	keep := os.Getenv(testenv.KeepDirEnv) != ""
	if keep {
		fmt.Fprintf(os.Stderr, "keeping %s (%s is set)\n", dir, testenv.KeepDirEnv)
	}
	bins, err := localcluster.DefaultBinaries()
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	env := &testenv.Env{Clusters: map[string]*localcluster.Cluster{}, Bins: bins, Dir: dir}
	var (
		mu    sync.Mutex
		etcds []*localcluster.Etcd
		errs  []error
	)
	stop := func() {
		var wg sync.WaitGroup
		for _, c := range env.Clusters {
			wg.Go(func() { _ = c.Stop() })
		}
		wg.Wait()
		for _, e := range etcds {
			_ = e.Stop()
		}
		if !keep {
			os.RemoveAll(dir)
		}
	}
	var shared *localcluster.Etcd
	if !opts.etcdEach {
		if shared, err = localcluster.StartEtcd(ctx, dir, bins.Etcd); err != nil {
			stop()
			return nil, nil, err
		}
		env.Etcd, etcds = shared, []*localcluster.Etcd{shared}
	}
	sem := make(chan struct{}, max(1, opts.parallel))
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, e, err := startOne(ctx, filepath.Join(dir, name), name, shared, bins, opts.timeout)
			mu.Lock()
			defer mu.Unlock()
			if e != nil && e != shared {
				etcds = append(etcds, e)
				if name == names[0] {
					env.Etcd = e
				}
			}
			if err != nil {
				errs = append(errs, err)
				return
			}
			env.Clusters[name] = c
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		stop()
		return nil, nil, firstErrors(errs)
	}
	return env, stop, nil
}

// startOne starts a cluster called name in dir, with an etcd of its own
// there unless shared is given.
func startOne(ctx context.Context, dir, name string, shared *localcluster.Etcd, bins localcluster.Binaries, timeout time.Duration) (*localcluster.Cluster, *localcluster.Etcd, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	e := shared
	if e == nil {
		var err error
		if e, err = localcluster.StartEtcd(ctx, dir, bins.Etcd); err != nil {
			return nil, nil, fmt.Errorf("etcd of %s: %w", name, err)
		}
	}
	c, err := localcluster.StartCluster(ctx, e, bins, localcluster.ClusterOptions{Name: name, Dir: dir, StartTimeout: timeout})
	return c, e, err
}

// firstErrors keeps the first of errs in full (each carries a log tail of
// 30 lines) and names how many more there were.
func firstErrors(errs []error) error {
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	if len(errs) == 1 {
		return errs[0]
	}
	var firstLines []string
	for _, err := range errs[1:] {
		firstLines = append(firstLines, strings.SplitN(err.Error(), "\n", 2)[0])
	}
	return errors.Join(errs[0], fmt.Errorf("and %d more:\n%s", len(errs)-1, strings.Join(firstLines, "\n")))
}
