package canary

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestParseSteps(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []int32
		wantErr string
	}{
		{in: "10,50,100", want: []int32{10, 50, 100}},
		{in: " 5%, 25% ,100 ", want: []int32{5, 25, 100}},
		{in: "100", want: []int32{100}},
		{in: "", wantErr: "no steps"},
		{in: "10,x,100", wantErr: `"x" is not a whole percentage`},
		{in: "50,10,100", wantErr: "does not rise"},
		{in: "10,10,100", wantErr: "does not rise"},
		{in: "0,100", wantErr: "between 1 and 100"},
		{in: "10,150", wantErr: "between 1 and 100"},
		{in: "10,50", wantErr: "end the plan at 100"},
	} {
		got, err := ParseSteps(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseSteps(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSteps(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestNextStep(t *testing.T) {
	steps := []int32{10, 50, 100}
	for _, tc := range []struct {
		current   int32
		wantIndex int
		wantDone  bool
	}{
		{0, 0, false}, {10, 1, false}, {30, 1, false}, {50, 2, false}, {100, 2, true},
	} {
		i, done := NextStep(steps, tc.current)
		if i != tc.wantIndex || done != tc.wantDone {
			t.Errorf("NextStep(%v, %d) = %d, %v; want %d, %v", steps, tc.current, i, done, tc.wantIndex, tc.wantDone)
		}
	}
}

func TestLifecycle(t *testing.T) {
	s := Begin(State{Service: "reviews", Steps: []int32{10, 50, 100}})
	type want struct {
		split Split
		phase Phase
	}
	check := func(what string, s State, w want) {
		t.Helper()
		if s.Split != w.split || s.Phase != w.phase || s.Split.Stable+s.Split.Canary != 100 {
			t.Errorf("%s: %s %s, want %s %s", what, s.Split, s.Phase, w.split, w.phase)
		}
	}
	check("start", s, want{Split{90, 10}, PhaseProgressing})
	s, err := Advance(s)
	check("step 2", s, want{Split{50, 50}, PhaseProgressing})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Advance(s)
	check("step 3", p, want{Split{0, 100}, PhasePromoted})
	if _, err := Advance(p); err == nil || !strings.Contains(err.Error(), "already promoted") {
		t.Errorf("advancing a promoted canary: %v", err)
	}
	check("promote", Promote(s), want{Split{0, 100}, PhasePromoted})
	r := Rollback(s, "gate failed")
	check("rollback", r, want{Split{100, 0}, PhaseRolledBack})
	if r.Message != "gate failed" {
		t.Errorf("rollback message %q", r.Message)
	}
	if _, err := Advance(r); err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Errorf("advancing a rolled-back canary: %v", err)
	}
	check("one-step plan", Begin(State{Steps: []int32{100}}), want{Split{0, 100}, PhasePromoted})
}

func TestJudge(t *testing.T) {
	g := &Gate{MinSuccessRate: 0.99, MaxLatencyMillis: 500, MinRequests: 10}
	for _, tc := range []struct {
		name string
		r    Reading
		want Verdict
		why  string
	}{
		{"healthy", Reading{Requests: 100, SuccessRate: 1, LatencyP99Millis: 20}, VerdictPass, ""},
		{"at the threshold", Reading{Requests: 100, SuccessRate: 0.99, LatencyP99Millis: 500}, VerdictPass, ""},
		{"too few requests", Reading{Requests: 3, SuccessRate: 0, LatencyP99Millis: 20}, VerdictHold, "fewer than the 10"},
		{"errors", Reading{Requests: 100, SuccessRate: 0.5, LatencyP99Millis: 20}, VerdictFail, "success rate 50.00% is below the minimum 99.00%"},
		{"no success data", Reading{Requests: 100, SuccessRate: math.NaN(), LatencyP99Millis: 20}, VerdictFail, "success rate"},
		{"slow", Reading{Requests: 100, SuccessRate: 1, LatencyP99Millis: 900}, VerdictFail, "p99 latency 900.0ms is above the maximum 500.0ms"},
		{"no latency data", Reading{Requests: 100, SuccessRate: 1, LatencyP99Millis: math.NaN()}, VerdictPass, ""},
	} {
		got := g.Judge(tc.r)
		if got.Verdict != tc.want || !strings.Contains(got.Reason, tc.why) {
			t.Errorf("%s: %s %q, want %s %q", tc.name, got.Verdict, got.Reason, tc.want, tc.why)
		}
	}
}

func TestGateQueries(t *testing.T) {
	g := &Gate{Selector: `destination_version="v2"`, Window: Duration(30e9)}
	r, s, l := g.Queries()
	for _, q := range []string{r, s, l} {
		if !strings.Contains(q, `{destination_version="v2"`) || !strings.Contains(q, "[30s]") {
			t.Errorf("query %s lacks the selector or window", q)
		}
	}
	if !strings.Contains(s, `grpc_response_status=~"0|"`) || !strings.Contains(s, `response_code!~"5.."`) {
		t.Errorf("success query %s does not exclude 5xx and gRPC errors", s)
	}
}
