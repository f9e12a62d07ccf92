package tunnel

import (
	"crypto/sha256"
	"sync"
	"time"
)

// tokenCache remembers TokenReview answers for a short time, so that a
// client's every request does not cost a TokenReview. It holds at most max
// entries, keyed by the token's SHA-256 (never the token itself).
type tokenCache struct {
	mu        sync.Mutex
	entries   map[[32]byte]tokenEntry
	max       int
	ttl       time.Duration
	deniedTTL time.Duration
	now       func() time.Time
}

type tokenEntry struct {
	id      *Identity
	err     error
	expires time.Time
}

func newTokenCache(max int, ttl, deniedTTL time.Duration) *tokenCache {
	return &tokenCache{entries: map[[32]byte]tokenEntry{}, max: max, ttl: ttl, deniedTTL: deniedTTL, now: time.Now}
}

func (c *tokenCache) get(token string) (*Identity, error, bool) {
	k := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil, nil, false
	}
	if c.now().After(e.expires) {
		delete(c.entries, k)
		return nil, nil, false
	}
	return e.id, e.err, true
}

func (c *tokenCache) put(token string, id *Identity, err error) {
	ttl := c.ttl
	if err != nil {
		ttl = c.deniedTTL
	}
	if ttl <= 0 || c.max <= 0 {
		return
	}
	k := sha256.Sum256([]byte(token))
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for key, e := range c.entries {
			if now.After(e.expires) {
				delete(c.entries, key)
			}
		}
	}
	for key := range c.entries {
		if len(c.entries) < c.max {
			break
		}
		delete(c.entries, key)
	}
	c.entries[k] = tokenEntry{id: id, err: err, expires: now.Add(ttl)}
}
