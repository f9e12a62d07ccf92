//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/meshfleet/internal/sandbox"
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/tests/framework"
)

// watch samples istiod's generated rules and the operator's conditions
// during one fault, until stop.
type watch struct {
	mu sync.Mutex
	// lost are the baseline rules missing from at least one answer of istiod.
	lost map[string]bool
	// istiodDown counts samples istiod did not answer.
	istiodDown int
	// conditions are the operator's conditions that were not True, with
	// how many samples saw each.
	conditions map[string]int
	// firstBad and lastBad bound the samples in which a call failed or
	// was answered outside its client's zone.
	firstBad, lastBad time.Time
	stop              chan struct{}
	done              chan struct{}
}

func startWatch(ctx context.Context, sb *sandbox.Sandbox, c client.Client, baseline map[string]bool) *watch {
	w := &watch{lost: map[string]bool{}, conditions: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		prev := totals(sb)
		for i := 0; ; i++ {
			now := totals(sb)
			if d := now.minus(prev); d.errors > 0 || d.inZone < d.calls {
				w.mu.Lock()
				if w.firstBad.IsZero() {
					w.firstBad = time.Now().Add(-250 * time.Millisecond)
				}
				w.lastBad = time.Now()
				w.mu.Unlock()
			}
			prev = now
			rules, err := framework.GeneratedRules(ctx, sb.Istiod.HTTPAddr)
			w.mu.Lock()
			if err != nil {
				w.istiodDown++
			} else {
				for r := range baseline {
					if !rules[r] {
						w.lost[r] = true
					}
				}
			}
			w.mu.Unlock()
			if i%4 == 0 {
				for _, cond := range notTrue(ctx, c) {
					w.mu.Lock()
					w.conditions[cond]++
					w.mu.Unlock()
				}
			}
			select {
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *watch) end() {
	close(w.stop)
	<-w.done
}

// disruption is how long calls failed or left their zone (0 if never).
func (w *watch) disruption() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastBad.Sub(w.firstBad)
}

func (w *watch) lostRules() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for r := range w.lost {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func (w *watch) conditionSummary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.conditions) == 0 {
		return "all True"
	}
	var out []string
	for c := range w.conditions {
		out = append(out, c)
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// notTrue lists the conditions of the Istio and RemoteIstio resources that
// are not True, as "kind/name Type=Status Reason". An unreachable primary
// is reported as such.
func notTrue(ctx context.Context, c client.Client) []string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var out []string
	var ists v1beta1.IstioList
	if err := c.List(ctx, &ists); err != nil {
		return []string{"primary API: " + err.Error()}
	}
	for _, i := range ists.Items {
		for _, cd := range i.Status.Conditions {
			if cd.Status != metav1.ConditionTrue {
				out = append(out, fmt.Sprintf("Istio/%s %s=%s %s", i.Name, cd.Type, cd.Status, cd.Reason))
			}
		}
	}
	var ris v1beta1.RemoteIstioList
	if err := c.List(ctx, &ris); err != nil {
		return []string{"primary API: " + err.Error()}
	}
	for _, r := range ris.Items {
		for _, cd := range r.Status.Conditions {
			if cd.Status != metav1.ConditionTrue {
				out = append(out, fmt.Sprintf("RemoteIstio/%s %s=%s %s", r.Name, cd.Type, cd.Status, cd.Reason))
			}
		}
	}
	return out
}

// traffic sums the demo clients' counts.
type traffic struct{ calls, errors, inZone int }

func totals(sb *sandbox.Sandbox) traffic {
	var t traffic
	for _, c := range sb.Status().Totals {
		t.calls += c.Calls
		t.errors += c.Errors
		t.inZone += c.InZone
	}
	return t
}

func (t traffic) minus(o traffic) traffic {
	return traffic{calls: t.calls - o.calls, errors: t.errors - o.errors, inZone: t.inZone - o.inZone}
}

func (t traffic) inZonePct() float64 {
	if t.calls == 0 {
		return 0
	}
	return 100 * float64(t.inZone) / float64(t.calls)
}

// allHome reports whether every client's recent calls all went to its own
// zone, and if not, where they went.
func allHome(sb *sandbox.Sandbox) error {
	st := sb.Status()
	if len(st.Traffic) == 0 {
		return fmt.Errorf("no demo traffic yet")
	}
	for _, t := range st.Traffic {
		if t.Errors > 0 || t.ByZone[t.Client] < 99.9 {
			return fmt.Errorf("client in %s: %v, %d errors in its last %d calls", t.Client, t.ByZone, t.Errors, t.Calls)
		}
	}
	return nil
}

// allIn reports whether the recent calls of the client in zone from all went
// to zone to.
func allIn(sb *sandbox.Sandbox, from, to string) error {
	for _, t := range sb.Status().Traffic {
		if t.Client == from {
			if t.ByZone[to] < 99.9 {
				return fmt.Errorf("client in %s: %v, %d errors", from, t.ByZone, t.Errors)
			}
			return nil
		}
	}
	return fmt.Errorf("no client in %s", from)
}
