package tunnel

import (
	"net/http"
	"net/url"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
)

// impersonateHeaderPrefix starts every Kubernetes impersonation header
// (Impersonate-User, -Group, -Uid, -Extra-<key>).
const impersonateHeaderPrefix = "Impersonate-"

// hasImpersonation reports whether h carries any impersonation header.
func hasImpersonation(h http.Header) bool {
	for k := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), impersonateHeaderPrefix) {
			return true
		}
	}
	return false
}

// setImpersonation replaces the caller's credentials in h by impersonation
// headers for id, which the agent forwards with its own credentials.
func setImpersonation(h http.Header, id *Identity) {
	h.Del("Authorization")
	for k := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), impersonateHeaderPrefix) {
			delete(h, k)
		}
	}
	h.Set(authnv1.ImpersonateUserHeader, id.User)
	for _, g := range id.Groups {
		h.Add(authnv1.ImpersonateGroupHeader, g)
	}
	if id.UID != "" {
		h.Set(authnv1.ImpersonateUIDHeader, id.UID)
	}
	for k, vs := range id.Extra {
		// The API server path-unescapes the key (it may hold '/').
		name := authnv1.ImpersonateUserExtraHeaderPrefix + url.PathEscape(k)
		for _, v := range vs {
			h.Add(name, v)
		}
	}
}
