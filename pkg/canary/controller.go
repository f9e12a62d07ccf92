package canary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	clientnetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

const (
	// AnnotationState holds a canary's State (JSON) on its VirtualService.
	AnnotationState = "canary.meshfleet.io/state"
	// LabelCanary marks objects meshfleet created for a canary, valued
	// with the service's name.
	LabelCanary = "canary.meshfleet.io/service"
	// DefaultDomain is the cluster's DNS domain.
	DefaultDomain = "cluster.local"
)

// Controller reads and writes a namespace's canaries through Istio's
// client. It holds no state of its own: everything is in the cluster.
type Controller struct {
	Istio     istioclient.Interface
	Namespace string
	// Domain is the cluster DNS domain (default cluster.local).
	Domain string
	// Prometheus builds the gate's client (default NewPrometheus).
	Prometheus func(url string) (promv1.API, error)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// StartOptions describe a new canary.
type StartOptions struct {
	Service string
	// StableSubset and CanarySubset name the subsets (default stable, canary).
	StableSubset, CanarySubset string
	// StableLabels and CanaryLabels select each subset's pods; when empty,
	// the subset must already exist in the DestinationRule.
	StableLabels, CanaryLabels map[string]string
	// Steps are the canary's percentages (default DefaultSteps).
	Steps []int32
	Gate  *Gate
}

// Status is what `meshctl canary status` shows.
type Status struct {
	State
	Namespace      string `json:"namespace"`
	VirtualService string `json:"virtualService"`
	// Live is the split the VirtualService's default route gives now (it
	// differs from State.Split if someone edited the routes).
	Live *Split `json:"live,omitempty"`
	// Reading is a fresh gate reading (nil without a gate).
	Reading *Reading `json:"reading,omitempty"`
	// GateError says why there is no reading.
	GateError string `json:"gateError,omitempty"`
}

func (c *Controller) domain() string {
	if c.Domain == "" {
		return DefaultDomain
	}
	return c.Domain
}

func (c *Controller) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Controller) target(s State) Target {
	return Target{Service: s.Service, Namespace: c.Namespace, Domain: c.domain(), StableSubset: s.StableSubset, CanarySubset: s.CanarySubset}
}

// Start writes the subsets and the first step's weights. Starting again
// restarts the plan (and may change subsets, steps or gate).
func (c *Controller) Start(ctx context.Context, o StartOptions) (State, error) {
	if o.Service == "" {
		return State{}, fmt.Errorf("no service given")
	}
	if o.StableSubset == "" {
		o.StableSubset = "stable"
	}
	if o.CanarySubset == "" {
		o.CanarySubset = "canary"
	}
	if o.StableSubset == o.CanarySubset {
		return State{}, fmt.Errorf("stable and canary subsets are both %q; give them different names", o.StableSubset)
	}
	if len(o.Steps) == 0 {
		o.Steps = DefaultSteps
	}
	if err := ValidateSteps(o.Steps); err != nil {
		return State{}, err
	}
	if o.Gate != nil {
		if err := o.Gate.Validate(); err != nil {
			return State{}, err
		}
	}
	s := State{
		Service: o.Service, StableSubset: o.StableSubset, CanarySubset: o.CanarySubset,
		Steps: o.Steps, Gate: o.Gate,
	}
	t := c.target(s)
	s.Host = t.Host()
	var stable, canary *networkingv1alpha3.Subset
	if len(o.StableLabels) > 0 {
		stable = &networkingv1alpha3.Subset{Name: o.StableSubset, Labels: o.StableLabels}
	}
	if len(o.CanaryLabels) > 0 {
		canary = &networkingv1alpha3.Subset{Name: o.CanarySubset, Labels: o.CanaryLabels}
	}
	managedDR, err := c.writeDestinationRule(ctx, t, stable, canary)
	if err != nil {
		return State{}, err
	}
	s.ManagedDestinationRule = managedDR
	return c.update(ctx, o.Service, true, func(prev *State) (State, error) {
		if prev != nil {
			s.ManagedVirtualService = prev.ManagedVirtualService
		}
		return Begin(s), nil
	})
}

// Step moves the canary to its next step. With a gate, it reads the gate
// first: a failing reading rolls the canary back, too few requests hold
// it (an error says so) unless force is set.
func (c *Controller) Step(ctx context.Context, service string, force bool) (State, error) {
	s, _, err := c.Get(ctx, service)
	if err != nil {
		return State{}, err
	}
	if s.Phase != PhaseProgressing {
		_, err := Advance(s)
		return s, err
	}
	if s.Gate != nil {
		r, err := c.read(ctx, s.Gate)
		if err != nil {
			return s, err
		}
		switch {
		case r.Verdict == VerdictFail:
			return c.update(ctx, service, false, func(prev *State) (State, error) {
				n := Rollback(*prev, "gate failed: "+r.Reason)
				n.LastReading = &r
				return n, nil
			})
		case r.Verdict == VerdictHold && !force:
			_, _ = c.update(ctx, service, false, func(prev *State) (State, error) {
				n := *prev
				n.LastReading = &r
				return n, nil
			})
			return s, &HoldError{Reading: r}
		}
		return c.update(ctx, service, false, func(prev *State) (State, error) {
			n, err := Advance(*prev)
			n.LastReading = &r
			return n, err
		})
	}
	return c.update(ctx, service, false, func(prev *State) (State, error) { return Advance(*prev) })
}

// HoldError says the gate had too little data to let the canary advance.
type HoldError struct{ Reading Reading }

func (e *HoldError) Error() string {
	return "canary holds its step: " + e.Reading.Reason + "; wait for more traffic, or step without the gate's verdict"
}

// Promote sends all traffic to the canary.
func (c *Controller) Promote(ctx context.Context, service string) (State, error) {
	return c.update(ctx, service, false, func(prev *State) (State, error) { return Promote(*prev), nil })
}

// Rollback sends all traffic to the stable version.
func (c *Controller) Rollback(ctx context.Context, service, why string) (State, error) {
	if why == "" {
		why = "rolled back by hand"
	}
	return c.update(ctx, service, false, func(prev *State) (State, error) { return Rollback(*prev, why), nil })
}

// Run steps the canary every interval until it is promoted or rolled back
// (by its gate, or by anyone else), calling progress after each change.
func (c *Controller) Run(ctx context.Context, service string, interval time.Duration, progress func(State)) (State, error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s, _, _ := c.Get(context.WithoutCancel(ctx), service)
			return s, ctx.Err()
		case <-t.C:
		}
		s, err := c.Step(ctx, service, false)
		var hold *HoldError
		switch {
		case err == nil:
		case errors.As(err, &hold):
			s.LastReading = &hold.Reading
		default:
			return s, err
		}
		if progress != nil {
			progress(s)
		}
		if s.Phase != PhaseProgressing {
			return s, nil
		}
	}
}

// Get returns the canary's state and its VirtualService.
func (c *Controller) Get(ctx context.Context, service string) (State, *clientnetworkingv1.VirtualService, error) {
	vs, err := c.findVirtualService(ctx, service)
	if err != nil {
		return State{}, nil, err
	}
	if vs == nil || vs.Annotations[AnnotationState] == "" {
		return State{}, nil, fmt.Errorf("service %s/%s has no canary; start one with meshctl canary start %s", c.Namespace, service, service)
	}
	var s State
	if err := json.Unmarshal([]byte(vs.Annotations[AnnotationState]), &s); err != nil {
		return State{}, nil, fmt.Errorf("VirtualService %s/%s: annotation %s is not a canary state (%v); remove it and start the canary again", c.Namespace, vs.Name, AnnotationState, err)
	}
	return s, vs, nil
}

// Status returns the state, the live split and, with a gate, a fresh reading.
func (c *Controller) Status(ctx context.Context, service string) (Status, error) {
	s, vs, err := c.Get(ctx, service)
	if err != nil {
		return Status{}, err
	}
	st := Status{State: s, Namespace: c.Namespace, VirtualService: vs.Name}
	if live, ok := WeightsOf(&vs.Spec, c.target(s)); ok {
		st.Live = &live
	}
	if s.Gate != nil {
		r, err := c.read(ctx, s.Gate)
		if err != nil {
			st.GateError = err.Error()
		} else {
			st.Reading = &r
		}
	}
	return st, nil
}

func (c *Controller) read(ctx context.Context, g *Gate) (Reading, error) {
	mk := c.Prometheus
	if mk == nil {
		mk = NewPrometheus
	}
	prom, err := mk(g.PrometheusURL)
	if err != nil {
		return Reading{}, err
	}
	return g.Read(ctx, prom, c.now())
}

// update applies change to the canary's state and writes the
// VirtualService's routes and annotation, retrying on conflicts. create
// allows a canary that does not exist yet.
func (c *Controller) update(ctx context.Context, service string, create bool, change func(prev *State) (State, error)) (State, error) {
	var out State
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		vs, err := c.findVirtualService(ctx, service)
		if err != nil {
			return err
		}
		var prev *State
		if vs != nil && vs.Annotations[AnnotationState] != "" {
			var p State
			if err := json.Unmarshal([]byte(vs.Annotations[AnnotationState]), &p); err == nil {
				prev = &p
			}
		}
		if prev == nil && !create {
			return fmt.Errorf("service %s/%s has no canary; start one with meshctl canary start %s", c.Namespace, service, service)
		}
		next, err := change(prev)
		if err != nil {
			return err
		}
		isNew := vs == nil
		if isNew {
			vs = &clientnetworkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{
				Name: service, Namespace: c.Namespace, Labels: map[string]string{LabelCanary: service},
			}}
			next.ManagedVirtualService = true
		}
		spec, err := MergeVirtualService(&vs.Spec, c.target(next), next.Split)
		if err != nil {
			return fmt.Errorf("VirtualService %s/%s: %w", c.Namespace, vs.Name, err)
		}
		raw, err := json.Marshal(next)
		if err != nil {
			return err
		}
		// Spec holds a proto message (with a lock): set its fields, not the value.
		vs.Spec.Hosts, vs.Spec.Http = spec.Hosts, spec.Http
		if vs.Annotations == nil {
			vs.Annotations = map[string]string{}
		}
		vs.Annotations[AnnotationState] = string(raw)
		api := c.Istio.NetworkingV1().VirtualServices(c.Namespace)
		if isNew {
			_, err = api.Create(ctx, vs, metav1.CreateOptions{FieldManager: "meshctl-canary"})
		} else {
			_, err = api.Update(ctx, vs, metav1.UpdateOptions{FieldManager: "meshctl-canary"})
		}
		if err != nil {
			return err
		}
		out = next
		return nil
	})
	if err != nil && !strings.Contains(err.Error(), c.Namespace) {
		err = fmt.Errorf("canary %s/%s: %w", c.Namespace, service, err)
	}
	return out, err
}

// findVirtualService returns the mesh VirtualService that routes the
// service: the one holding the canary's state, else the only one whose
// hosts name the service, else nil.
func (c *Controller) findVirtualService(ctx context.Context, service string) (*clientnetworkingv1.VirtualService, error) {
	list, err := c.Istio.NetworkingV1().VirtualServices(c.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing VirtualServices in %s: %w", c.Namespace, err)
	}
	var found []*clientnetworkingv1.VirtualService
	for _, vs := range list.Items {
		if !meshBound(&vs.Spec) {
			continue
		}
		for _, h := range vs.Spec.Hosts {
			if HostMatches(h, service, c.Namespace, c.domain()) {
				if vs.Annotations[AnnotationState] != "" {
					return vs, nil
				}
				found = append(found, vs)
				break
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("VirtualServices %s in %s all route %s; merge them into one, so that the canary's weights apply to all traffic", names(found), c.Namespace, service)
}

func meshBound(vs *networkingv1alpha3.VirtualService) bool {
	if len(vs.Gateways) == 0 {
		return true
	}
	for _, g := range vs.Gateways {
		if g == "mesh" {
			return true
		}
	}
	return false
}

func names[T interface{ GetName() string }](objs []T) string {
	var n []string
	for _, o := range objs {
		n = append(n, o.GetName())
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// writeDestinationRule adds the subsets to the DestinationRule for the
// service (creating one, with subsets only, when there is none) and reports
// whether meshfleet created it. Traffic policies are never touched, so a
// locality policy stays as it is.
func (c *Controller) writeDestinationRule(ctx context.Context, t Target, stable, canary *networkingv1alpha3.Subset) (bool, error) {
	api := c.Istio.NetworkingV1().DestinationRules(t.Namespace)
	managed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		list, err := api.List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing DestinationRules in %s: %w", t.Namespace, err)
		}
		var found []*clientnetworkingv1.DestinationRule
		for _, dr := range list.Items {
			if dr.Spec.WorkloadSelector == nil && HostMatches(dr.Spec.Host, t.Service, t.Namespace, t.Domain) {
				found = append(found, dr)
			}
		}
		var dr *clientnetworkingv1.DestinationRule
		switch len(found) {
		case 0:
			dr = &clientnetworkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{
				Name: t.Service, Namespace: t.Namespace, Labels: map[string]string{LabelCanary: t.Service},
			}}
			managed = true
		case 1:
			dr = found[0]
			managed = dr.Labels[LabelCanary] == t.Service
		default:
			return fmt.Errorf("DestinationRules %s in %s are all for %s; keep one (Istio merges them unpredictably)", names(found), t.Namespace, t.Host())
		}
		spec, err := MergeDestinationRule(&dr.Spec, t, stable, canary)
		if err != nil {
			name := dr.Name
			return fmt.Errorf("DestinationRule %s/%s: %w", t.Namespace, name, err)
		}
		dr.Spec.Host, dr.Spec.Subsets = spec.Host, spec.Subsets
		if managed && dr.ResourceVersion == "" {
			_, err = api.Create(ctx, dr, metav1.CreateOptions{FieldManager: "meshctl-canary"})
		} else {
			_, err = api.Update(ctx, dr, metav1.UpdateOptions{FieldManager: "meshctl-canary"})
		}
		if apierrors.IsAlreadyExists(err) {
			return apierrors.NewConflict(clientnetworkingv1.Resource("destinationrules"), dr.Name, err)
		}
		return err
	})
	return managed, err
}
