package ca

import (
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"
)

// Defaults for RootOptions.
const (
	DefaultOrganization   = "meshfleet"
	DefaultRootCommonName = "meshfleet root CA"
)

// RootOptions configures NewRoot.
type RootOptions struct {
	// Organization is the root's Subject O; DefaultOrganization when empty.
	Organization string
	// CommonName is the root's Subject CN; DefaultRootCommonName when empty.
	CommonName string
	// TTL is how long the root is valid; it must be positive.
	TTL time.Duration
	// Now is the current time; it must be set.
	Now time.Time
}

// NewRoot creates a self-signed root CA with a new ECDSA P-256 key, valid from
// one minute before Now until Now plus TTL.
func NewRoot(opts RootOptions) (*KeyPair, error) {
	if opts.TTL <= 0 {
		return nil, fmt.Errorf("create root CA: ttl must be positive, got %s", opts.TTL)
	}
	if opts.Now.IsZero() {
		return nil, errors.New("create root CA: now must be set")
	}
	org := opts.Organization
	if org == "" {
		org = DefaultOrganization
	}
	cn := opts.CommonName
	if cn == "" {
		cn = DefaultRootCommonName
	}
	key, err := generateKey()
	if err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	subject := pkix.Name{Organization: []string{org}, CommonName: cn}
	template, err := caTemplate(subject, key, opts.Now, opts.Now.Add(opts.TTL))
	if err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	root, err := sign(template, template, key, key)
	if err != nil {
		return nil, fmt.Errorf("create root CA: %w", err)
	}
	return root, nil
}
