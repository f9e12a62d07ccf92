// Package health is the locality server's health as published through the
// Kubernetes API: a small, bounded Summary that the writing replica keeps in
// the ConfigMap ConfigMapName of its rules namespace, and Judge, which reads
// it with the writer's Lease into one line for `meshctl status`. Everything
// here is pure; the server writes the ConfigMap and meshctl reads it.
package health

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

const (
	// ConfigMapName names the ConfigMap that holds the Summary, in the
	// namespace of the generated rules.
	ConfigMapName = "meshfleet-locality-status"
	// Key is the ConfigMap key that holds the Summary as JSON.
	Key = "summary.json"
	// MaxNames bounds each list of rule names kept in a Summary; counts are
	// always complete.
	MaxNames = 10
	// maxError bounds the length of Summary.Error.
	maxError = 512
)

// Summary is the state of the locality server's writer, small and bounded
// whatever the size of the mesh.
type Summary struct {
	// Writer is the identity of the replica that wrote the Summary (its
	// pod name, the Lease's holder identity).
	Writer string `json:"writer"`
	// Lease is namespace/name of the Lease that elects the writer; empty
	// when the server runs without one (then staleness cannot be told).
	Lease string `json:"lease,omitempty"`
	// Members are the member clusters, sorted by name.
	Members []Member `json:"members"`
	// Rules counts the generated rules the writer manages in the cluster.
	Rules int `json:"rules"`
	// Held counts the rules kept as they are although the translation
	// changed or dropped them; HeldNames lists at most MaxNames of them and
	// HeldReason says why.
	Held       int      `json:"held"`
	HeldNames  []string `json:"heldNames,omitempty"`
	HeldReason string   `json:"heldReason,omitempty"`
	// Conflicts counts generated rules not written because another object
	// has their name; ConflictNames lists at most MaxNames of them.
	Conflicts     int      `json:"conflicts"`
	ConflictNames []string `json:"conflictNames,omitempty"`
	// Error is the last translation or write error, cut to 512 bytes.
	Error string `json:"error,omitempty"`
	// LastWrite is when rules were last written successfully.
	LastWrite *time.Time `json:"lastWrite,omitempty"`
	// DuplicateLocality counts the services whose endpoints give istiod one
	// locality twice (rulesync.DebugState.DuplicateLocality: proxyless gRPC
	// clients reject their EDS responses); DuplicateLocalityServices lists
	// at most MaxNames of them (namespace/name).
	DuplicateLocality         int      `json:"duplicateLocality,omitempty"`
	DuplicateLocalityServices []string `json:"duplicateLocalityServices,omitempty"`
}

// Member is one member cluster's state.
type Member struct {
	Name string `json:"name"`
	// Synced is true once the member's caches synced since the writer
	// started; a member that synced and became unreachable keeps its last
	// known objects and stays synced.
	Synced bool `json:"synced"`
	// NotSyncedSince is when the writer first saw it not synced.
	NotSyncedSince *time.Time `json:"notSyncedSince,omitempty"`
}

// Bound cuts the lists and the error of s to their limits (counts stay
// complete) and returns s.
func (s Summary) Bound() Summary {
	if len(s.HeldNames) > MaxNames {
		s.HeldNames = s.HeldNames[:MaxNames]
	}
	if len(s.ConflictNames) > MaxNames {
		s.ConflictNames = s.ConflictNames[:MaxNames]
	}
	if len(s.DuplicateLocalityServices) > MaxNames {
		s.DuplicateLocalityServices = s.DuplicateLocalityServices[:MaxNames]
	}
	if len(s.Error) > maxError {
		s.Error = s.Error[:maxError] + "…"
	}
	return s
}

// Encode is the ConfigMap data holding s (bounded).
func (s Summary) Encode() (map[string]string, error) {
	b, err := json.Marshal(s.Bound())
	if err != nil {
		return nil, fmt.Errorf("encoding the locality summary: %w", err)
	}
	return map[string]string{Key: string(b)}, nil
}

// Decode reads a Summary from the ConfigMap data; namespace is used in errors.
func Decode(namespace string, data map[string]string) (*Summary, error) {
	raw, ok := data[Key]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s/%s has no key %s: the locality server has not published its state yet", namespace, ConfigMapName, Key)
	}
	var s Summary
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s key %s: %w; delete the ConfigMap and the locality server writes it again", namespace, ConfigMapName, Key, err)
	}
	return &s, nil
}

// Lease is what Judge needs of the writer's coordination.k8s.io Lease.
type Lease struct {
	// Holder is spec.holderIdentity ("" when released).
	Holder string
	// Renewed is spec.renewTime; Duration is spec.leaseDurationSeconds.
	Renewed  time.Time
	Duration time.Duration
}

// Verdict is the locality server's health in one line.
type Verdict struct {
	// State is "ok", "degraded" or "not running".
	State string `json:"state"`
	// Line says what is wrong and how much, or that all is well.
	Line string `json:"line"`
}

// The states of a Verdict.
const (
	StateOK         = "ok"
	StateDegraded   = "degraded"
	StateNotRunning = "not running"
)

// Problem reports whether the verdict counts as a problem.
func (v Verdict) Problem() bool { return v.State != StateOK }

// Judge reads the summary s (nil if none was published) with the writer's
// Lease (nil if it does not exist) at time now. A summary whose Lease is
// missing, released, expired or held by another replica than its writer
// is stale: the server is taken as not running, never as healthy.
func Judge(s *Summary, lease *Lease, now time.Time) Verdict {
	if s == nil {
		return Verdict{StateNotRunning, "it has published no state"}
	}
	if s.Lease != "" {
		switch {
		case lease == nil:
			return Verdict{StateNotRunning, fmt.Sprintf("its Lease %s does not exist (last writer %s)", s.Lease, s.Writer)}
		case lease.Holder == "":
			return Verdict{StateNotRunning, fmt.Sprintf("Lease %s released by %s and not taken", s.Lease, s.Writer)}
		case now.After(lease.Renewed.Add(lease.Duration)):
			return Verdict{StateNotRunning, fmt.Sprintf("Lease %s of %s expired at %s", s.Lease, lease.Holder, clock(lease.Renewed.Add(lease.Duration)))}
		case lease.Holder != s.Writer:
			return Verdict{StateNotRunning, fmt.Sprintf("%s holds Lease %s but has not published its state (the state shown is %s's)", lease.Holder, s.Lease, s.Writer)}
		}
	}
	var bad []string
	for _, m := range s.Members {
		if m.Synced {
			continue
		}
		b := "member " + m.Name + " not synced"
		if m.NotSyncedSince != nil {
			b += " since " + clock(*m.NotSyncedSince)
		}
		bad = append(bad, b)
	}
	held := ""
	if s.Held > 0 {
		held = ": " + count(s.Held, "rule") + " held"
	}
	if len(s.Members) == 0 {
		bad = append(bad, "no member cluster known")
	}
	if len(bad) > 0 {
		return Verdict{StateDegraded, strings.Join(bad, ", ") + held}
	}
	if s.Held > 0 {
		bad = append(bad, fmt.Sprintf("%s held (%s)", count(s.Held, "rule"), s.HeldReason))
	}
	if s.Conflicts > 0 {
		bad = append(bad, fmt.Sprintf("%s in conflict with objects not made by meshfleet (%s)", count(s.Conflicts, "rule"), strings.Join(s.ConflictNames, ", ")))
	}
	if s.Error != "" {
		bad = append(bad, "last error: "+s.Error)
	}
	if s.DuplicateLocality > 0 {
		bad = append(bad, fmt.Sprintf("%s whose endpoints give istiod one locality twice, which proxyless gRPC clients reject (%s; meshctl locality shows the fix)",
			count(s.DuplicateLocality, "service"), strings.Join(s.DuplicateLocalityServices, ", ")))
	}
	if len(bad) > 0 {
		return Verdict{StateDegraded, strings.Join(bad, "; ")}
	}
	line := fmt.Sprintf("%s synced, %s, writer %s", count(len(s.Members), "member"), count(s.Rules, "rule"), s.Writer)
	if s.LastWrite != nil {
		line += ", last write " + clock(*s.LastWrite)
	}
	return Verdict{StateOK, line}
}

// clock prints t in UTC, to the second.
func clock(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// count is "1 rule", "2 rules".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
