package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/meshfleet/meshfleet/pkg/check"
)

func TestPrintChecks(t *testing.T) {
	rs := []check.Result{
		{Group: "tunnel", Check: "the tunnel server answers", Status: check.StatusOK, Message: "http://t/metrics"},
		{Group: "tunnel", Check: "remote-1's tunnel agents are connected", Status: check.StatusFail, Message: "no agent", Hint: "start it"},
		{Group: "gateways", Check: "g is available", Status: check.StatusWarn, Message: "m", Hint: "h"},
	}
	var b bytes.Buffer
	if err := printChecks(&b, "table", rs); err != nil {
		t.Fatal(err)
	}
	want := `tunnel
------
√ the tunnel server answers: http://t/metrics
× remote-1's tunnel agents are connected: no agent
    hint: start it

gateways
--------
‼ g is available: m
    hint: h

Status check results are × (1 failed, 1 warning(s))
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := printChecks(&b, "json", rs); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Results  []check.Result
		Failed   int
		Warnings int
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil || doc.Failed != 1 || doc.Warnings != 1 || len(doc.Results) != 3 || doc.Results[1].Hint != "start it" {
		t.Errorf("json: %v %+v", err, doc)
	}
}
