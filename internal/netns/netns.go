package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// EnvInside is set to "1" in the environment of a process that Reexec
// started inside a new network namespace.
const EnvInside = "MESHFLEET_NETNS"

// WorkloadRange is the range workload addresses must come from: the
// benchmarking range, never routed on the internet.
var WorkloadRange = netip.MustParsePrefix("198.18.0.0/15")

// Inside reports whether this process runs in a network namespace made by
// Reexec.
func Inside() bool { return os.Getenv(EnvInside) == "1" }

// Main is the entry point for a TestMain or a command: outside a private
// namespace it re-executes the current binary in one (see Reexec) and returns
// the child's exit status; inside, it sets up lo with addrs (see Setup) and
// returns run(). Errors are printed to stderr and give status 1.
func Main(run func() int, addrs ...netip.Addr) int {
	if !Inside() {
		code, err := Reexec()
		if err != nil {
			fmt.Fprintf(os.Stderr, "netns: %v\n", err)
			return 1
		}
		return code
	}
	if err := Setup(addrs...); err != nil {
		fmt.Fprintf(os.Stderr, "netns: %v\n", err)
		return 1
	}
	return run()
}

// Setup brings the loopback interface up and adds each address (which must
// be in WorkloadRange) to it as a /32. It refuses to run outside a namespace
// made by Reexec, so that it never changes the host's network.
func Setup(addrs ...netip.Addr) error {
	if err := checkPrivate(); err != nil {
		return fmt.Errorf("setting up network namespace: %w", err)
	}
	for _, a := range addrs {
		if !a.Is4() || !WorkloadRange.Contains(a) {
			return fmt.Errorf("setting up network namespace: address %s is not in %s; use addresses from that range", a, WorkloadRange)
		}
	}
	if err := ip("link", "set", "lo", "up"); err != nil {
		return fmt.Errorf("setting up network namespace: %w", err)
	}
	for _, a := range addrs {
		if err := ip("addr", "replace", a.String()+"/32", "dev", "lo"); err != nil {
			return fmt.Errorf("setting up network namespace: adding %s to lo: %w", a, err)
		}
	}
	return nil
}

// checkPrivate returns an error unless this process runs in a namespace made
// by Reexec, as far as it can tell: the marker variable is set and (when
// readable) the network namespace differs from that of PID 1.
func checkPrivate() error {
	if !Inside() {
		return fmt.Errorf("not inside a private network namespace (%s is not 1); start the program through netns.Main or netns.Reexec", EnvInside)
	}
	self, err1 := os.Readlink("/proc/self/ns/net")
	init, err2 := os.Readlink("/proc/1/ns/net")
	if err1 == nil && err2 == nil && self == init {
		return fmt.Errorf("%s is set but this process shares its network namespace (%s) with PID 1", EnvInside, self)
	}
	return nil
}

// ip runs the ip command with args.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			return fmt.Errorf("ip %s: %w (install iproute2)", strings.Join(args, " "), err)
		}
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
