package tunnel

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseOptions makes one server of several active: the holder of a
// coordination.k8s.io Lease in the primary cluster.
type LeaseOptions struct {
	// Client reaches the cluster that holds the Lease.
	Client kubernetes.Interface
	// Namespace and Name locate the Lease.
	Namespace, Name string
	// Identity names this server in the Lease (normally the pod name); it
	// must differ between servers.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are as in
	// k8s.io/client-go/tools/leaderelection; 15s, 10s and 2s if zero.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// PodNamespace and PodName, when set, name this server's own Pod, which
	// it labels RoleLabel=active while it holds the Lease and
	// RoleLabel=standby once it stops: the Services select the active
	// replica by that label, while every healthy replica counts as ready
	// (rolling updates, PodDisruptionBudgets and drains work as for any
	// Deployment).
	PodNamespace, PodName string
}

// RoleLabel is the label of a tunnel server's Pod that says whether it
// holds the Lease (RoleActive) or stands by (RoleStandby).
const (
	RoleLabel   = "meshfleet.io/tunnel-role"
	RoleActive  = "active"
	RoleStandby = "standby"
)

// labelPod sets this server's RoleLabel, when it knows its Pod. It uses its
// own deadline: it also runs as the server stops.
func (s *Server) labelPod(role string) {
	o := s.opts.Lease
	if o.PodName == "" || o.PodNamespace == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, RoleLabel, role)
	if _, err := o.Client.CoreV1().Pods(o.PodNamespace).Patch(ctx, o.PodName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		s.log.Error("labelling this server's pod", "pod", o.PodNamespace+"/"+o.PodName, "role", role, "error", err)
		return
	}
	s.log.Info("labelled this server's pod", "pod", o.PodNamespace+"/"+o.PodName, "role", role)
}

func (o *LeaseOptions) validate() error {
	switch {
	case o.Client == nil:
		return errors.New("lease: no client for the primary cluster")
	case o.Namespace == "" || o.Name == "":
		return fmt.Errorf("lease: namespace %q and name %q must both be set", o.Namespace, o.Name)
	case o.Identity == "":
		return errors.New("lease: no identity; give this server's name in the Lease (normally the pod name)")
	case (o.PodName == "") != (o.PodNamespace == ""):
		return fmt.Errorf("lease: pod %q in namespace %q: give both, or neither", o.PodName, o.PodNamespace)
	}
	return nil
}

// runWithLease competes for the Lease; the server is active while it holds
// it. It returns nil when ctx is done and an error when the lease is lost.
func (s *Server) runWithLease(ctx context.Context) error {
	o := s.opts.Lease
	dur, renew, retry := o.LeaseDuration, o.RenewDeadline, o.RetryPeriod
	if dur == 0 {
		dur = 15 * time.Second
	}
	if renew == 0 {
		renew = 10 * time.Second
	}
	if retry == 0 {
		retry = 2 * time.Second
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
			Client:     o.Client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
		},
		LeaseDuration:   dur,
		RenewDeadline:   renew,
		RetryPeriod:     retry,
		ReleaseOnCancel: true,
		Name:            "meshfleet-tunnel",
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				s.log.Info("acquired the tunnel lease", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
				s.setActive(true)
				s.labelPod(RoleActive)
			},
			OnStoppedLeading: func() {
				s.setActive(false)
				s.labelPod(RoleStandby)
			},
			OnNewLeader: func(id string) {
				if id != o.Identity {
					s.log.Info("tunnel lease held by another server; standing by", "lease", o.Namespace+"/"+o.Name, "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("lease %s/%s: %w", o.Namespace, o.Name, err)
	}
	le.Run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("lost the tunnel lease %s/%s", o.Namespace, o.Name)
}
