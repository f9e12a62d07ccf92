package rulesync

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Lease names the coordination.k8s.io Lease that elects the one writer.
type Lease struct {
	Namespace, Name string
	// Identity is this replica's name in the Lease (its pod name).
	Identity string
	// Duration, RenewDeadline and RetryPeriod are client-go's leader
	// election timings; 15 s, 10 s and 2 s if zero.
	Duration, RenewDeadline, RetryPeriod time.Duration
}

// lead campaigns for the Lease until ctx ends: writes happen only while
// this replica holds it. Leadership is given up on shutdown, so the other
// replica takes over within RetryPeriod rather than Duration.
func (s *Server) lead(ctx context.Context) {
	l := *s.opts.Lease
	if l.Duration == 0 {
		l.Duration, l.RenewDeadline, l.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name},
		Client:     s.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: l.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: FieldManager, ReleaseOnCancel: true,
			LeaseDuration: l.Duration, RenewDeadline: l.RenewDeadline, RetryPeriod: l.RetryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					s.log.Info("leading: writing the locality rules", "lease", l.Namespace+"/"+l.Name, "identity", l.Identity)
					s.setLeader(true)
					s.Notify()
				},
				OnStoppedLeading: func() {
					s.log.Info("not leading: another replica writes the locality rules", "lease", l.Namespace+"/"+l.Name)
					s.setLeader(false)
				},
			},
		})
		if err != nil {
			s.log.Error("leader election misconfigured; not writing", "err", err)
			return
		}
		le.Run(ctx)
	}
}
