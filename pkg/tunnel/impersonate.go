package tunnel

import (
	"encoding/base64"
	"net/http"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"

	"github.com/meshfleet/meshfleet/pkg/tunnel/mapping"
)

const (
	// impersonateHeaderPrefix starts every Kubernetes impersonation header
	// (Impersonate-User, -Group, -Uid, -Extra-<key>).
	impersonateHeaderPrefix = "impersonate-"
	// remoteHeaderPrefix starts the headers of kube-apiserver's
	// request-header (front proxy) authentication: X-Remote-User,
	// X-Remote-Group, X-Remote-Extra-<key>.
	remoteHeaderPrefix = "x-remote-"
	// websocketBearerPrefix starts the WebSocket subprotocol in which
	// Kubernetes clients send a bearer token (base64url, unpadded), as
	// browsers cannot set an Authorization header on a WebSocket.
	websocketBearerPrefix   = "base64url.bearer.authorization.k8s.io."
	websocketProtocolHeader = "Sec-WebSocket-Protocol"
)

// hasImpersonation reports whether h carries any impersonation header.
func hasImpersonation(h http.Header) bool {
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), impersonateHeaderPrefix) {
			return true
		}
	}
	return false
}

// stripCredentials removes from h every header that carries a credential
// or an identity: Authorization, Proxy-Authorization, Impersonate-*,
// X-Remote-*, and the bearer-token WebSocket subprotocol (the other
// subprotocols stay, so exec and port-forward still negotiate theirs).
func stripCredentials(h http.Header) {
	for k := range h {
		lk := strings.ToLower(k)
		switch {
		case lk == "authorization", lk == "proxy-authorization",
			strings.HasPrefix(lk, impersonateHeaderPrefix), strings.HasPrefix(lk, remoteHeaderPrefix):
			delete(h, k)
		}
	}
	values := h.Values(websocketProtocolHeader)
	if len(values) == 0 {
		return
	}
	var keep []string
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if p != "" && !strings.HasPrefix(strings.ToLower(p), websocketBearerPrefix) {
				keep = append(keep, p)
			}
		}
	}
	h.Del(websocketProtocolHeader)
	if len(keep) > 0 {
		h.Set(websocketProtocolHeader, strings.Join(keep, ", "))
	}
}

// websocketBearerToken returns the bearer token a WebSocket client sent in
// Sec-WebSocket-Protocol.
func websocketBearerToken(h http.Header) (string, bool) {
	for _, v := range h.Values(websocketProtocolHeader) {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if len(p) <= len(websocketBearerPrefix) || !strings.EqualFold(p[:len(websocketBearerPrefix)], websocketBearerPrefix) {
				continue
			}
			b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p[len(websocketBearerPrefix):], "="))
			if err != nil || len(b) == 0 {
				return "", false
			}
			return string(b), true
		}
	}
	return "", false
}

// setImpersonation replaces every credential in h by impersonation headers
// for id, which the agent forwards with its own credentials.
func setImpersonation(h http.Header, id mapping.Identity) {
	stripCredentials(h)
	h.Set(authnv1.ImpersonateUserHeader, id.User)
	for _, g := range id.Groups {
		h.Add(authnv1.ImpersonateGroupHeader, g)
	}
}
