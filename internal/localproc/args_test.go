package localproc

import (
	"net"
	"reflect"
	"strconv"
	"testing"
)

func TestMergeArgsOverridesDefaults(t *testing.T) {
	base := []string{"--a=1", "--b=2", "--flag", "--c=3"}
	got := MergeArgs(base, []string{"--b=20", "--flag=false", "--d=4"})
	want := []string{"--a=1", "--c=3", "--b=20", "--flag=false", "--d=4"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mergeArgs = %q, want %q", got, want)
	}
	if got := MergeArgs(base, nil); !reflect.DeepEqual(got, base) {
		t.Errorf("MergeArgs(base, nil) = %q", got)
	}
}

func TestFlagName(t *testing.T) {
	for arg, want := range map[string]string{"--v=4": "v", "--x": "x", "--a-b=c=d": "a-b"} {
		if got, err := FlagName(arg); err != nil || got != want {
			t.Errorf("FlagName(%q) = %q, %v; want %q", arg, got, err, want)
		}
	}
	for _, bad := range []string{"-v=4", "v", "--", "--=x", "value"} {
		if _, err := FlagName(bad); err == nil {
			t.Errorf("FlagName(%q) succeeded", bad)
		}
	}
}

func TestTailLines(t *testing.T) {
	if got := tailLines([]byte("a\nb\nc\n"), 2); got != "b\nc" {
		t.Errorf("tailLines = %q", got)
	}
	if got := tailLines([]byte("a"), 5); got != "a" {
		t.Errorf("tailLines = %q", got)
	}
	if !PortInUse("listen tcp 127.0.0.1:1: bind: address already in use") {
		t.Error("portInUse missed a bind failure")
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("free port %d not usable: %v", p, err)
	}
	l.Close()
}
