package canary

import (
	"fmt"
	"strconv"
	"strings"
)

// Phase is where a canary stands.
type Phase string

const (
	// PhaseProgressing: the canary gets some traffic and more steps follow.
	PhaseProgressing Phase = "Progressing"
	// PhasePromoted: the canary gets all the traffic.
	PhasePromoted Phase = "Promoted"
	// PhaseRolledBack: the stable version gets all the traffic again.
	PhaseRolledBack Phase = "RolledBack"
)

// DefaultSteps is the canary's share, in percent, at each step.
var DefaultSteps = []int32{10, 50, 100}

// Split is how traffic divides between the two subsets, in percent; the two
// always add up to 100.
type Split struct {
	Stable int32 `json:"stable"`
	Canary int32 `json:"canary"`
}

// SplitFor returns the split that gives the canary canary percent.
func SplitFor(canary int32) Split { return Split{Stable: 100 - canary, Canary: canary} }

func (s Split) String() string { return fmt.Sprintf("%d/%d", s.Stable, s.Canary) }

// ParseSteps parses a comma-separated list of canary percentages such as
// "10,50,100". Steps must rise strictly, lie in 1..100 and end at 100 (the
// last step is the promotion).
func ParseSteps(s string) ([]int32, error) {
	var steps []int32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(f), "%"))
		if f == "" {
			continue
		}
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("steps %q: %q is not a whole percentage; write e.g. 10,50,100", s, f)
		}
		steps = append(steps, int32(v))
	}
	if err := ValidateSteps(steps); err != nil {
		return nil, fmt.Errorf("steps %q: %w", s, err)
	}
	return steps, nil
}

// ValidateSteps checks a step plan (see ParseSteps).
func ValidateSteps(steps []int32) error {
	if len(steps) == 0 {
		return fmt.Errorf("no steps; give at least one, e.g. 10,50,100")
	}
	for i, v := range steps {
		if v < 1 || v > 100 {
			return fmt.Errorf("step %d is %d%%; each step must be between 1 and 100", i+1, v)
		}
		if i > 0 && v <= steps[i-1] {
			return fmt.Errorf("step %d (%d%%) does not rise above step %d (%d%%); list steps in increasing order", i+1, v, i, steps[i-1])
		}
	}
	if last := steps[len(steps)-1]; last != 100 {
		return fmt.Errorf("last step is %d%%; end the plan at 100 (the promotion), e.g. append ,100", last)
	}
	return nil
}

// NextStep returns the index of the step after the one that gives the canary
// current percent: the first step above current. done is true when the
// canary already has 100%.
func NextStep(steps []int32, current int32) (index int, done bool) {
	for i, v := range steps {
		if v > current {
			return i, false
		}
	}
	return len(steps) - 1, true
}

// State is a canary's plan and progress. It is kept, as JSON, in the
// annotation AnnotationState of the VirtualService that routes the service.
type State struct {
	// Service is the short name of the Kubernetes Service.
	Service string `json:"service"`
	// Host is the host the routes and subsets apply to (the Service's FQDN).
	Host string `json:"host"`
	// StableSubset and CanarySubset name the DestinationRule subsets.
	StableSubset string `json:"stableSubset"`
	CanarySubset string `json:"canarySubset"`
	// Steps are the canary's percentages, ending at 100.
	Steps []int32 `json:"steps"`
	// Step indexes Steps: the step in effect (-1 once rolled back).
	Step int `json:"step"`
	// Split is the weight in effect.
	Split Split `json:"split"`
	Phase Phase `json:"phase"`
	// Message says why the phase is what it is (e.g. the gate's breach).
	Message string `json:"message,omitempty"`
	// Gate, when set, is checked before every step.
	Gate *Gate `json:"gate,omitempty"`
	// LastReading is the gate's latest reading.
	LastReading *Reading `json:"lastReading,omitempty"`
	// ManagedDestinationRule and ManagedVirtualService are true when
	// meshfleet created the object (rather than editing the user's).
	ManagedDestinationRule bool `json:"managedDestinationRule,omitempty"`
	ManagedVirtualService  bool `json:"managedVirtualService,omitempty"`
}

// Begin returns the state of a canary that starts at its first step.
func Begin(s State) State {
	s.Step = 0
	s.Split = SplitFor(s.Steps[0])
	s.Phase = PhaseProgressing
	s.Message = ""
	if s.Split.Canary == 100 {
		s.Phase = PhasePromoted
	}
	return s
}

// Advance moves s to its next step; reaching 100% promotes it. It refuses
// to move a canary that was rolled back or is already promoted.
func Advance(s State) (State, error) {
	switch s.Phase {
	case PhaseRolledBack:
		return s, fmt.Errorf("canary %s was rolled back; start it again with meshctl canary start", s.Service)
	case PhasePromoted:
		return s, fmt.Errorf("canary %s is already promoted (%s)", s.Service, s.Split)
	}
	i, done := NextStep(s.Steps, s.Split.Canary)
	if done {
		return Promote(s), nil
	}
	s.Step = i
	s.Split = SplitFor(s.Steps[i])
	s.Message = ""
	if s.Split.Canary == 100 {
		s.Phase = PhasePromoted
		s.Message = "reached the last step"
	}
	return s, nil
}

// Promote sends all traffic to the canary.
func Promote(s State) State {
	s.Step = len(s.Steps) - 1
	s.Split = SplitFor(100)
	s.Phase = PhasePromoted
	s.Message = "promoted"
	return s
}

// Rollback sends all traffic back to the stable version, saying why.
func Rollback(s State, why string) State {
	s.Step = -1
	s.Split = SplitFor(0)
	s.Phase = PhaseRolledBack
	s.Message = why
	return s
}
