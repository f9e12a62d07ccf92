package rulesync

import (
	"context"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/meshfleet/meshfleet/pkg/locality/health"
)

// trackUnsynced remembers since when each member has not synced (now for
// a member newly seen unsynced) and forgets members that synced or left.
// Called under syncMu.
func (s *Server) trackUnsynced(members map[string]bool, now time.Time) {
	for name, ok := range members {
		if _, seen := s.unsyncedSince[name]; !ok && !seen {
			s.unsyncedSince[name] = now
		}
	}
	for name := range s.unsyncedSince {
		if ok, member := members[name]; ok || !member {
			delete(s.unsyncedSince, name)
		}
	}
}

// Summary is the writer's state as published in the ConfigMap
// health.ConfigMapName: members, rules managed and held, conflicts, the
// last error and write.
func (s *Server) Summary() health.Summary {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return s.summary()
}

// summary is Summary; called under syncMu.
func (s *Server) summary() health.Summary {
	st := s.State()
	out := health.Summary{Writer: s.identity, Rules: st.Rules, Held: len(st.Held), HeldNames: st.Held,
		HeldReason: st.HeldReason, Conflicts: len(st.Conflicts), Error: st.Error, LastWrite: st.LastWrite}
	if l := s.opts.Lease; l != nil {
		out.Lease = l.Namespace + "/" + l.Name
	}
	for _, c := range st.Conflicts {
		out.ConflictNames = append(out.ConflictNames, conflictName(c))
	}
	out.DuplicateLocality = len(st.DuplicateLocality)
	for _, p := range st.DuplicateLocality {
		out.DuplicateLocalityServices = append(out.DuplicateLocalityServices, p.Service)
	}
	since := s.unsyncedSince
	for _, m := range st.Members {
		sm := health.Member{Name: m.Name, Synced: m.Synced}
		if t, ok := since[m.Name]; ok && !m.Synced {
			t := t.Truncate(time.Second)
			sm.NotSyncedSince = &t
		}
		out.Members = append(out.Members, sm)
	}
	if out.LastWrite != nil {
		t := out.LastWrite.Truncate(time.Second)
		out.LastWrite = &t
	}
	return out.Bound()
}

// conflictName is the rule's name in a conflict message ("DestinationRule
// ns/name exists …").
func conflictName(msg string) string {
	if f := strings.Fields(msg); len(f) > 1 && f[0] == "DestinationRule" {
		return f[1]
	}
	return msg
}

// publish writes the Summary into the ConfigMap when it differs from what
// this replica last wrote (or it has just become the writer). Called under
// syncMu, by the writer only; a failed write is retried with the rules'
// backoff.
func (s *Server) publish(ctx context.Context) {
	data, err := s.summary().Encode()
	if err != nil {
		s.log.Error("locality summary not published", "err", err)
		return
	}
	fresh := s.republish.Swap(false)
	if !fresh && data[health.Key] == s.published {
		return
	}
	// The operator renders this ConfigMap (without data) when it deploys
	// the server; should the server create it first (run by hand, the
	// sandbox), the operator adopts it (pkg/apply.AdoptAnnotation) instead
	// of stopping its install on an object it did not create.
	cm := corev1ac.ConfigMap(health.ConfigMapName, s.opts.Namespace).WithData(data).
		WithAnnotations(map[string]string{"meshfleet.io/adopt": "true"})
	if _, err := s.configMaps.Apply(ctx, cm, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		s.published = ""
		s.republish.Store(true)
		s.log.Warn("locality summary not published; retrying", "configMap", s.opts.Namespace+"/"+health.ConfigMapName, "err", err)
		s.scheduleRetry()
		return
	}
	s.published = data[health.Key]
}
