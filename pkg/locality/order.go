package locality

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Ranked is one candidate region in a failover order, and why it is where
// it is.
type Ranked struct {
	Region string `json:"region"`
	// Source is "explicit", "rtt" or "default".
	Source string `json:"source"`
	// RTT is the measured distance when Source is "rtt".
	RTT string `json:"rtt,omitempty"`
}

// Orders maps each source region to the other regions, nearest first.
type Orders map[string][]Ranked

// ComputeOrders ranks, for each region, every other region: the explicit
// target first, then regions with a measured distance (shortest first),
// then the rest in the stable default order.
func ComputeOrders(regions []string, explicit []Failover, distances []Distance) Orders {
	first := map[string]string{}
	for _, f := range explicit {
		first[f.From] = f.To
	}
	rtt := map[[2]string]time.Duration{}
	for _, d := range distances {
		for _, k := range [][2]string{{d.From, d.To}, {d.To, d.From}} {
			if cur, ok := rtt[k]; !ok || d.RTT.Duration < cur {
				rtt[k] = d.RTT.Duration
			}
		}
	}
	all := map[string]bool{}
	for _, r := range regions {
		all[r] = true
	}
	for _, f := range explicit {
		all[f.From], all[f.To] = true, true
	}
	out := Orders{}
	for from := range all {
		var others []string
		for r := range all {
			if r != from {
				others = append(others, r)
			}
		}
		sort.Slice(others, func(i, j int) bool {
			a, b := others[i], others[j]
			if ea, eb := first[from] == a, first[from] == b; ea != eb {
				return ea
			}
			da, oka := rtt[[2]string{from, a}]
			db, okb := rtt[[2]string{from, b}]
			if oka != okb {
				return oka
			}
			if oka && da != db {
				return da < db
			}
			if pa, pb := commonPrefix(from, a), commonPrefix(from, b); pa != pb {
				return pa > pb
			}
			return a < b
		})
		ranked := make([]Ranked, 0, len(others))
		for _, r := range others {
			switch d, ok := rtt[[2]string{from, r}]; {
			case first[from] == r:
				ranked = append(ranked, Ranked{Region: r, Source: "explicit"})
			case ok:
				ranked = append(ranked, Ranked{Region: r, Source: "rtt", RTT: d.String()})
			default:
				ranked = append(ranked, Ranked{Region: r, Source: "default"})
			}
		}
		out[from] = ranked
	}
	return out
}

// commonPrefix is the length of the common prefix of a and b.
func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// ParseFailoverAnnotation parses "from=to,from=to" (spaces allowed).
func ParseFailoverAnnotation(v string) ([]Failover, error) {
	var out []Failover
	seen := map[string]bool{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		from, to, ok := strings.Cut(part, "=")
		from, to = strings.TrimSpace(from), strings.TrimSpace(to)
		switch {
		case !ok || from == "" || to == "":
			return nil, fmt.Errorf("%q is not of the form from=to; write e.g. %q", part, "us-east=us-west,us-west=us-east")
		case from == to:
			return nil, fmt.Errorf("%q fails a region over to itself; name another region after =", part)
		case seen[from]:
			return nil, fmt.Errorf("region %q is given twice; keep one target per source region", from)
		}
		seen[from] = true
		out = append(out, Failover{From: from, To: to})
	}
	return out, nil
}
