package remoteistio

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
)

func TestOutage(t *testing.T) {
	gr := schema.GroupResource{Resource: "secrets"}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", &url.Error{Op: "Get", URL: "https://r", Err: syscall.ECONNREFUSED}, true},
		{"client timeout", fmt.Errorf("apply: %w", context.DeadlineExceeded), true},
		{"etcd down: 500", apierrors.NewInternalError(errors.New("etcdserver: request timed out")), true},
		{"etcd down: 504", apierrors.NewTimeoutError("request did not complete", 0), true},
		{"503", apierrors.NewServiceUnavailable("no agent"), true},
		{"429", apierrors.NewTooManyRequests("slow down", 1), true},
		{"failing webhook", apierrors.NewInternalError(errors.New(`failed calling webhook "x": connection refused`)), false},
		{"forbidden", apierrors.NewForbidden(gr, "cacerts", errors.New("no")), false},
		{"invalid", apierrors.NewBadRequest("bad"), false},
		{"conflict", apierrors.NewConflict(gr, "cacerts", errors.New("changed")), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := outage(c.err); got != c.want {
			t.Errorf("%s: outage = %v, want %v", c.name, got, c.want)
		}
	}
	out := remoteFailed(v1beta1.ReasonApplyFailed, "remote-2", "writing cacerts", cases[2].err)
	if out.Reason != v1beta1.ReasonUnreachable || out.Err != nil {
		t.Errorf("an etcd outage during a write = %+v, want Unreachable, not an error for the user", out)
	}
	out = remoteFailed(v1beta1.ReasonApplyFailed, "remote-2", "writing cacerts", cases[7].err)
	if out.Reason != v1beta1.ReasonApplyFailed || out.Err == nil {
		t.Errorf("a refused write = %+v, want ApplyFailed", out)
	}
}
