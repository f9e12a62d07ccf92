package apply

import (
	"testing"

	"sigs.k8s.io/yaml"
)

func TestCovers(t *testing.T) {
	cases := []struct {
		name          string
		live, desired string
		want          bool
		at            string
	}{
		{"identical", `{a: 1, b: x}`, `{a: 1, b: x}`, true, ""},
		{"live has defaults", `{a: 1, b: {c: 2, d: 3}, status: {x: 1}}`, `{a: 1, b: {c: 2}}`, true, ""},
		{"changed scalar", `{spec: {image: evil}}`, `{spec: {image: good}}`, false, ".spec.image"},
		{"missing field", `{spec: {}}`, `{spec: {replicas: 1}}`, false, ".spec.replicas"},
		{"int vs float", `{port: 15010}`, `{port: 15010.0}`, true, ""},
		{"quantity canonical form", `{memory: 2Gi, cpu: "0.5"}`, `{memory: 2048Mi, cpu: 500m}`, true, ""},
		{"different quantity", `{memory: 1Gi}`, `{memory: 2048Mi}`, false, ".memory"},
		{"empty desired map absent in live", `{a: 1}`, `{a: 1, annotations: {}}`, true, ""},
		{"empty string dropped by the server", `{env: [{name: PLATFORM}]}`, `{env: [{name: PLATFORM, value: ""}]}`, true, ""},
		{"false dropped by the server", `{a: 1}`, `{a: 1, hostNetwork: false}`, true, ""},
		{"null desired ignored", `{a: 1}`, `{a: 1, b: null}`, true, ""},
		{"list element defaulted", `{ports: [{port: 80, protocol: TCP}]}`, `{ports: [{port: 80}]}`, true, ""},
		{"list element removed", `{ports: [{port: 80}]}`, `{ports: [{port: 80}, {port: 443}]}`, false, ".ports[1]"},
		{"list with foreign entry", `{env: [{name: A}, {name: X}, {name: B}]}`, `{env: [{name: A}, {name: B}]}`, true, ""},
		{"list order changed", `{args: [b, a]}`, `{args: [a, b]}`, false, ".args[0]"},
		{"status ignored", `{status: {}}`, `{status: {ready: true}}`, true, ""},
		{"type changed", `{a: {b: 1}}`, `{a: [1]}`, false, ".a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var live, desired map[string]any
			if err := yaml.Unmarshal([]byte(c.live), &live); err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal([]byte(c.desired), &desired); err != nil {
				t.Fatal(err)
			}
			got, at := Covers(live, desired)
			if got != c.want || at != c.at {
				t.Errorf("Covers = %v at %q, want %v at %q", got, at, c.want, c.at)
			}
		})
	}
}
