package ca

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestVerifyChain(t *testing.T) {
	root := newTestRoot(t, 365*day)
	other := newTestRoot(t, 365*day)
	inter := newTestIntermediate(t, root, "east", 30*day, testNow)
	cases := []struct {
		name       string
		certIsRoot bool
		against    *KeyPair
		now        time.Time
		wantErr    string
	}{
		{name: "intermediate against its root", against: root, now: testNow},
		{name: "root against itself", certIsRoot: true, against: root, now: testNow},
		{name: "intermediate against another root", against: other, now: testNow, wantErr: "certificate signed by unknown authority"},
		{name: "after intermediate expiry", against: root, now: inter.Cert.NotAfter.Add(time.Second), wantErr: "expired"},
		{name: "zero time", against: root, wantErr: "now must be set"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			cert := inter.Cert
			if tt.certIsRoot {
				cert = root.Cert
			}
			checkErr(t, VerifyChain(cert, tt.against.Cert, tt.now), tt.wantErr)
		})
	}
	checkErr(t, VerifyChain(nil, root.Cert, testNow), "certificate and root are required")
	checkErr(t, VerifyChain(inter.Cert, nil, testNow), "certificate and root are required")
}

func TestFingerprint(t *testing.T) {
	root := newTestRoot(t, day)
	got := Fingerprint(root.Cert)
	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(got) {
		t.Fatalf("Fingerprint = %q, want 32 upper-case hex pairs separated by colons", got)
	}
	sum := sha256.Sum256(root.Cert.Raw)
	if want := strings.ToUpper(hex.EncodeToString(sum[:])); strings.ReplaceAll(got, ":", "") != want {
		t.Errorf("Fingerprint = %q, want SHA-256 %s", got, want)
	}
	if other := Fingerprint(newTestRoot(t, day).Cert); other == got {
		t.Error("two roots share a fingerprint")
	}
	if got := Fingerprint(nil); got != "" {
		t.Errorf("Fingerprint(nil) = %q, want \"\"", got)
	}
}
