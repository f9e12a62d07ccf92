package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
)

// Identity is an authenticated caller, as the remote cluster will see it
// through impersonation.
type Identity struct {
	User   string
	UID    string
	Groups []string
	Extra  map[string][]string
	// Method is how the caller authenticated: "x509" or "token".
	Method string
}

// errUnauthenticated means the caller presented no valid credentials.
var errUnauthenticated = errors.New("unauthenticated")

// rateLimitedError means a token could not be checked now: too many unknown
// tokens were reviewed lately. The caller should retry after RetryAfter.
type rateLimitedError struct{ retryAfter time.Duration }

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("too many unknown bearer tokens to check; retry in %s", e.retryAfter.Round(time.Second))
}

// TokenAudience is the audience a caller's token must be issued for: a token
// for the API server itself (or anything else) is refused, so a token
// stolen from any pod of the primary does not open the tunnel.
const TokenAudience = "meshfleet-tunnel"

// authenticator establishes the Identity of a caller of the API proxy.
type authenticator struct {
	// clientCerts accepts verified TLS client certificates (the TLS layer
	// verified them against the client CA): CN is the user, O the groups.
	clientCerts bool
	// reviews checks bearer tokens with TokenReview; nil refuses tokens.
	reviews   authnv1client.TokenReviewInterface
	audiences []string
	cache     *tokenCache
	timeout   time.Duration
	// limiter bounds the TokenReviews of tokens not in the cache.
	limiter *rate.Limiter
}

// authenticate returns the caller's identity. It returns an error wrapping
// errUnauthenticated when the caller has no valid credentials, and another
// error when a token could not be checked.
func (a *authenticator) authenticate(r *http.Request) (*Identity, error) {
	if a.clientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		if leaf.Subject.CommonName == "" {
			return nil, fmt.Errorf("%w: client certificate has an empty Subject CN (the user name)", errUnauthenticated)
		}
		return &Identity{User: leaf.Subject.CommonName, Groups: leaf.Subject.Organization, Method: "x509"}, nil
	}
	token, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		token, ok = websocketBearerToken(r.Header)
	}
	if !ok {
		return nil, fmt.Errorf("%w: no client certificate and no bearer token", errUnauthenticated)
	}
	if a.reviews == nil {
		return nil, fmt.Errorf("%w: bearer tokens are not accepted by this server (no TokenReview configured)", errUnauthenticated)
	}
	if id, err, ok := a.cache.get(token); ok {
		return id, err
	}
	if a.limiter != nil {
		if res := a.limiter.Reserve(); !res.OK() || res.Delay() > 0 {
			delay := time.Second
			if res.OK() {
				delay = max(res.Delay(), time.Second)
				res.Cancel()
			}
			return nil, &rateLimitedError{retryAfter: delay}
		}
	}
	id, err := a.review(r.Context(), token)
	if err == nil || errors.Is(err, errUnauthenticated) {
		a.cache.put(token, id, err)
	}
	return id, err
}

func (a *authenticator) review(ctx context.Context, token string) (*Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	tr, err := a.reviews.Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: a.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("check bearer token with a TokenReview against the primary cluster: %w (the server needs RBAC create on tokenreviews.authentication.k8s.io)", err)
	}
	if !tr.Status.Authenticated {
		msg := "token rejected by TokenReview"
		if tr.Status.Error != "" {
			msg += ": " + tr.Status.Error
		}
		return nil, fmt.Errorf("%w: %s", errUnauthenticated, msg)
	}
	if len(a.audiences) > 0 && !intersects(tr.Status.Audiences, a.audiences) {
		return nil, fmt.Errorf("%w: token is for audiences %v, not %v", errUnauthenticated, tr.Status.Audiences, a.audiences)
	}
	u := tr.Status.User
	id := &Identity{User: u.Username, UID: u.UID, Groups: u.Groups, Method: "token"}
	if len(u.Extra) > 0 {
		id.Extra = make(map[string][]string, len(u.Extra))
		for k, v := range u.Extra {
			id.Extra[k] = v
		}
	}
	return id, nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header.
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
