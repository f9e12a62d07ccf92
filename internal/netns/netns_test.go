package netns

import (
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
)

var testAddr = netip.MustParseAddr("198.18.0.1")

// TestReexec re-executes the test binary (running only this test) in a new
// network namespace; the inner run checks the namespace.
func TestReexec(t *testing.T) {
	if Inside() {
		checkInside(t)
		return
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		t.Skipf("no network namespaces here: %v", err)
	}
	saved := os.Args
	os.Args = []string{saved[0], "-test.run=^TestReexec$", "-test.count=1", "-test.v"}
	defer func() { os.Args = saved }()
	code, err := Reexec()
	if err != nil {
		if strings.Contains(err.Error(), "operation not permitted") {
			t.Skipf("cannot create namespaces here: %v", err)
		}
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("test in the namespace exited with status %d", code)
	}
}

func checkInside(t *testing.T) {
	if err := Setup(testAddr); err != nil {
		t.Fatal(err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 || ifs[0].Name != "lo" {
		t.Errorf("interfaces in the namespace: %v, want only lo", ifs)
	}
	l, err := net.Listen("tcp", testAddr.String()+":0")
	if err != nil {
		t.Fatalf("listening on %s: %v", testAddr, err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dialing %s: %v", l.Addr(), err)
	}
	defer c.Close()
	if b, err := io.ReadAll(c); err != nil || string(b) != "hi" {
		t.Errorf("read %q, %v", b, err)
	}
}

func TestSetupRefusesOutsideNamespace(t *testing.T) {
	if Inside() {
		t.Skip("inside a namespace")
	}
	if err := Setup(testAddr); err == nil || !strings.Contains(err.Error(), "not inside") {
		t.Errorf("Setup outside a namespace: %v, want refusal", err)
	}
}

func TestSetupRejectsAddressOutsideRange(t *testing.T) {
	t.Setenv(EnvInside, "1")
	self, _ := os.Readlink("/proc/self/ns/net")
	init, _ := os.Readlink("/proc/1/ns/net")
	if self == "" || self == init {
		// checkPrivate fails first; that is refusal too.
		if err := Setup(netip.MustParseAddr("10.0.0.1")); err == nil {
			t.Fatal("Setup accepted 10.0.0.1 in the host namespace")
		}
		return
	}
	if err := Setup(netip.MustParseAddr("10.0.0.1")); err == nil || !strings.Contains(err.Error(), "198.18.0.0/15") {
		t.Errorf("Setup(10.0.0.1): %v", err)
	}
}
