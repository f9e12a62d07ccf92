package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestLogFlags(t *testing.T) {
	var buf bytes.Buffer
	l := logFlags{level: "warn", format: "json"}
	log, err := l.logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("dropped")
	log.Warn("kept", "cluster", "remote1")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("want one JSON line at warn, got %q: %v", buf.String(), err)
	}
	if line["msg"] != "kept" || line["cluster"] != "remote1" {
		t.Fatalf("line = %v", line)
	}

	for _, bad := range []logFlags{{level: "verbose", format: "json"}, {level: "info", format: "xml"}} {
		_, err := bad.logger(&buf)
		if err == nil || !strings.Contains(err.Error(), "--log-") {
			t.Errorf("%+v: err = %v, want one naming the flag", bad, err)
		}
	}
}
