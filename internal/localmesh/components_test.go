package localmesh

import (
	"context"
	"strings"
	"testing"
)

// fakeMesh has components that only record what was done to them.
func fakeMesh(names []string, active string) (*Mesh, *[]string) {
	s := &Mesh{}
	var log []string
	for _, n := range names {
		s.comps.add(&component{name: n,
			kill:   func() error { log = append(log, "kill "+n); return nil },
			start:  func(context.Context) error { log = append(log, "start "+n); return nil },
			active: func() bool { return n == active }})
	}
	return s, &log
}

func TestKillRestartResolveNames(t *testing.T) {
	names := []string{"istiod", "tunnel-server/0", "tunnel-server/1", "agent/remote-1/0", "agent/remote-1/1", "apiserver/remote-1"}
	s, log := fakeMesh(names, "tunnel-server/1")
	ctx := t.Context()

	// tunnel-server stands for the active replica.
	if got, err := s.Kill("tunnel-server"); err != nil || got != "tunnel-server/1" {
		t.Fatalf("Kill(tunnel-server) = %q, %v; want the active tunnel-server/1", got, err)
	}
	// agent/remote-1 picks one running agent; a second kill picks the other.
	a, _ := s.Kill("agent/remote-1")
	b, _ := s.Kill("agent/remote-1")
	if a == b || !strings.HasPrefix(a, "agent/remote-1/") || !strings.HasPrefix(b, "agent/remote-1/") {
		t.Fatalf("two kills of agent/remote-1 gave %q and %q", a, b)
	}
	if _, err := s.Kill("agent/remote-1"); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("killing a stopped group: %v", err)
	}
	// restart starts every stopped component of the group.
	got, err := s.Restart(ctx, "agent/remote-1")
	if err != nil || len(got) != 2 {
		t.Fatalf("Restart(agent/remote-1) = %v, %v; want both agents", got, err)
	}
	// restart of a running component kills and starts it.
	if got, err := s.Restart(ctx, "istiod"); err != nil || len(got) != 1 || got[0] != "istiod" {
		t.Fatalf("Restart(istiod) = %v, %v", got, err)
	}
	if want := "kill istiod,start istiod"; !strings.Contains(strings.Join(*log, ","), want) {
		t.Errorf("log %v lacks %q", *log, want)
	}
	if _, err := s.Kill("etcd/atlantis"); err == nil || !strings.Contains(err.Error(), "no component \"etcd/atlantis\"") || !strings.Contains(err.Error(), "istiod") {
		t.Errorf("unknown component: %v; want an error that lists the components", err)
	}
	for _, c := range s.Components() {
		if !c.Running && c.Name != "tunnel-server/1" {
			t.Errorf("%s reported stopped", c.Name)
		}
	}
}
