package xds

import (
	"net/http"
	"sort"

	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/locality"
)

// DebugState is what the debug endpoint shows.
type DebugState struct {
	// Version is the DestinationRule version istiod is (or will be) sent.
	Version string `json:"version"`
	// Error is the last translation error; the last good rules stay served.
	Error string `json:"error,omitempty"`
	// Clients are the node ids of the connected istiods.
	Clients []string `json:"clients,omitempty"`
	// Decisions holds, per service, the generated rule and why.
	Decisions []locality.Decision `json:"decisions"`
}

// State returns the current debug state.
func (s *Server) State() DebugState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := DebugState{Version: s.version}
	if s.lastErr != nil {
		st.Error = s.lastErr.Error()
	}
	for _, n := range s.nodes {
		st.Clients = append(st.Clients, n)
	}
	sort.Strings(st.Clients)
	if s.last != nil {
		st.Decisions = s.last.Decisions
	}
	return st
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
