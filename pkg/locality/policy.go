package locality

import (
	"fmt"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations a Service can carry to change what is generated for it.
const (
	// AnnotationLocality "off" turns generation off for the Service.
	AnnotationLocality = "meshfleet.io/locality"
	// AnnotationFailover gives the Service's own failover targets,
	// "from=to" pairs separated by commas, e.g. "r1=r3,r2=r1". They win
	// over the mesh-wide order for the regions they name.
	AnnotationFailover = "meshfleet.io/locality-failover"
)

// Policy is the mesh-wide input of the translation.
type Policy struct {
	// Failover names, per source region, the region to fail over to first
	// (the Istio CR's spec.localityLB.failover). It wins over distances.
	Failover []Failover `json:"failover,omitempty"`
	// Distances are measured round-trip times between regions.
	Distances []Distance `json:"distances,omitempty"`
	// OutlierDetection overrides DefaultOutlierDetection when set.
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
}

// Failover is one explicit "traffic of region From goes to To first".
type Failover struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Distance is the measured round-trip time between two regions (symmetric).
type Distance struct {
	From string          `json:"from"`
	To   string          `json:"to"`
	RTT  metav1.Duration `json:"rtt"`
}

// OutlierDetection is the outlier detection put on every generated rule.
type OutlierDetection struct {
	Consecutive5xxErrors uint32          `json:"consecutive5xxErrors"`
	Interval             metav1.Duration `json:"interval"`
	BaseEjectionTime     metav1.Duration `json:"baseEjectionTime"`
	MaxEjectionPercent   int32           `json:"maxEjectionPercent"`
}

// DefaultOutlierDetection suits failover: a few consecutive errors eject an
// endpoint quickly, and every endpoint of a locality may be ejected (Istio's
// default caps ejection at 10%, which would keep a failing zone in use).
// minHealthPercent stays 0, so Envoy never spreads traffic back over a
// failing locality in panic mode.
func DefaultOutlierDetection() OutlierDetection {
	return OutlierDetection{
		Consecutive5xxErrors: 5,
		Interval:             metav1.Duration{Duration: 2 * time.Second},
		BaseEjectionTime:     metav1.Duration{Duration: 30 * time.Second},
		MaxEjectionPercent:   100,
	}
}

// Validate checks the policy; errors name the field and the fix.
func (p *Policy) Validate() error {
	from := map[string]bool{}
	for i, f := range p.Failover {
		switch {
		case f.From == "" || f.To == "":
			return fmt.Errorf("failover[%d]: from and to are both required regions", i)
		case f.From == f.To:
			return fmt.Errorf("failover[%d]: from and to are both %q; name another region in to", i, f.From)
		case from[f.From]:
			return fmt.Errorf("failover[%d]: region %q is listed twice in from; keep one entry per source region", i, f.From)
		}
		from[f.From] = true
	}
	for i, d := range p.Distances {
		if d.From == "" || d.To == "" || d.RTT.Duration < 0 {
			return fmt.Errorf("distances[%d]: from and to regions and a non-negative rtt are required", i)
		}
	}
	if o := p.OutlierDetection; o != nil {
		if o.Interval.Duration <= 0 || o.BaseEjectionTime.Duration <= 0 || o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
			return fmt.Errorf("outlierDetection: interval and baseEjectionTime must be positive and maxEjectionPercent within 0..100")
		}
	}
	return nil
}

// DistancesFromRTT turns round-trip times measured from the primary cluster
// to each member cluster (the tunnel's Server.RTT) into region distances
// from the primary's region: the distance to a region is the smallest RTT
// to any of its clusters. Only the primary's vantage point is measured, so
// distances between two other regions stay unknown (they fall back to the
// default order).
func DistancesFromRTT(primaryRegion string, clusterRegion map[string]string, rtt func(cluster string) (time.Duration, bool)) []Distance {
	best := map[string]time.Duration{}
	for cluster, region := range clusterRegion {
		if region == "" || region == primaryRegion {
			continue
		}
		d, ok := rtt(cluster)
		if !ok {
			continue
		}
		if cur, seen := best[region]; !seen || d < cur {
			best[region] = d
		}
	}
	out := make([]Distance, 0, len(best))
	for region, d := range best {
		out = append(out, Distance{From: primaryRegion, To: region, RTT: metav1.Duration{Duration: d}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].To < out[j].To })
	return out
}
