package rulesync

import (
	"maps"
	"net/http"
	"slices"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/locality"
)

// DebugState is what the debug endpoint shows.
type DebugState struct {
	// Leader is true on the replica that writes the rules.
	Leader bool `json:"leader"`
	// Namespace holds the rules in the primary cluster.
	Namespace string `json:"namespace"`
	// Rules counts the rules written (as this replica's informer sees them).
	Rules int `json:"rules"`
	// Members are the member clusters and whether each synced since start.
	Members []Member `json:"members,omitempty"`
	// Held names rules kept as they are, and HeldReason why.
	Held       []string `json:"held,omitempty"`
	HeldReason string   `json:"heldReason,omitempty"`
	// Deferred names rules whose write waits for the hold-down: it
	// changes only failover entries no request uses now.
	Deferred []string `json:"deferred,omitempty"`
	// Conflicts name rules not written because another object has their name.
	Conflicts []string `json:"conflicts,omitempty"`
	// Error is the last translation error, else the last write error; the
	// rules in the cluster stay.
	Error string `json:"error,omitempty"`
	// LastWrite is when rules were last written.
	LastWrite *time.Time `json:"lastWrite,omitempty"`
	// DuplicateLocality lists the services whose endpoints reach istiod
	// with two locality strings for one locality (a pod label and a Node,
	// say): istiod sends that locality twice in one EDS response and
	// proxyless gRPC clients reject it. Each entry says how to fix it.
	// (meshctl locality prints them first; a health check can read them
	// here.)
	DuplicateLocality []ServiceProblem `json:"duplicateLocality,omitempty"`
	// Decisions holds, per service, the generated rule and why.
	Decisions []locality.Decision `json:"decisions"`
}

// ServiceProblem is a problem of one service and its fix.
type ServiceProblem struct {
	Service  string   `json:"service"`
	Problems []string `json:"problems"`
}

// Member is one member cluster's sync state.
type Member struct {
	Name   string `json:"name"`
	Synced bool   `json:"synced"`
}

// State returns the current debug state.
func (s *Server) State() DebugState {
	live := 0
	if s.informer.HasSynced() {
		live = len(s.informer.GetStore().ListKeys())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := DebugState{Leader: s.leader.Load(), Namespace: s.opts.Namespace, Rules: live,
		Held: s.plan.Held, HeldReason: s.plan.Reason, Deferred: s.deferredNames, Conflicts: s.conflicts}
	for _, name := range slices.Sorted(maps.Keys(s.members)) {
		st.Members = append(st.Members, Member{Name: name, Synced: s.members[name]})
	}
	if len(st.Held) == 0 {
		st.HeldReason = ""
	}
	if s.lastErr != nil {
		st.Error = s.lastErr.Error()
	} else if s.writeErr != nil {
		st.Error = s.writeErr.Error()
	}
	if !s.lastWrite.IsZero() {
		t := s.lastWrite
		st.LastWrite = &t
	}
	if s.last != nil {
		res, _ := s.last.result()
		st.Decisions = res.Decisions
	}
	st.DuplicateLocality = DuplicateLocalityOf(st.Decisions)
	return st
}

// DuplicateLocalityOf collects the decisions' duplicate-locality reports.
func DuplicateLocalityOf(ds []locality.Decision) []ServiceProblem {
	var out []ServiceProblem
	for _, d := range ds {
		if len(d.DuplicateLocalities) > 0 {
			out = append(out, ServiceProblem{Service: d.Service, Problems: d.DuplicateLocalities})
		}
	}
	return out
}

// DebugHandler serves the state as YAML at any path; ?service=ns/name
// narrows it to one service.
func (s *Server) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.State()
		if svc := r.URL.Query().Get("service"); svc != "" {
			var keep []locality.Decision
			for _, d := range st.Decisions {
				if d.Service == svc {
					keep = append(keep, d)
				}
			}
			if len(keep) == 0 {
				http.Error(w, "no service "+svc+" in any member cluster; give namespace/name", http.StatusNotFound)
				return
			}
			st.Decisions = keep
			st.DuplicateLocality = DuplicateLocalityOf(keep)
		}
		out, err := yaml.Marshal(st)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(out)
	})
}
