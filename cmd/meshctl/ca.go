package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/meshfleet/pkg/ca"
	"github.com/meshfleet/meshfleet/pkg/operator/meshca"
)

func newCACommand(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "ca",
		Short: "Work with the mesh's certificate authority (spec.security.externalCA)",
	}
	c.AddCommand(newSignIntermediateCommand(g))
	return c
}

// signOptions are the flags of `meshctl ca sign-intermediate`.
type signOptions struct {
	rootCert, rootKey string
	cluster           string
	primary           bool
	ttl               time.Duration
	out               string
}

func newSignIntermediateCommand(g *globals) *cobra.Command {
	o := &signOptions{}
	c := &cobra.Command{
		Use:   "sign-intermediate --root-cert FILE --root-key FILE --cluster NAME [--primary]",
		Short: "Sign a cluster's intermediate CA with your root, offline, and print its cacerts Secret",
		Long: `Signs the intermediate CA of one cluster with the mesh root whose certificate
and key are read from local files, and prints Istio's plug-in CA Secret
(cacerts: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) for that
cluster. Nothing is sent anywhere: run it where the root key is kept, then
apply the output to the cluster (kubectl --context CLUSTER apply -f).

The intermediate carries the constraints the operator puts on the ones it
issues: path length 0, EKUs serverAuth and clientAuth, URI SANs only in
spiffe://cluster.local, no IP or e-mail SANs, and DNS names only istiod's
(istiod, istiod-remote, istio-pilot .<namespace>.svc) with --primary, none
for a remote. Use it with spec.security.externalCA on the Istio resource.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			manifest, summary, err := signIntermediate(o, g.namespace, time.Now())
			if err != nil {
				return err
			}
			if o.out == "" {
				_, err = cmd.OutOrStdout().Write(manifest)
			} else {
				err = os.WriteFile(o.out, manifest, 0o600)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), summary)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.rootCert, "root-cert", "", "PEM file of the mesh's root certificate (the one in spec.security.externalCA.rootCertificate)")
	f.StringVar(&o.rootKey, "root-key", "", "PEM file of the root's private key (read locally, never sent)")
	f.StringVar(&o.cluster, "cluster", "", "cluster name the intermediate is for (the Istio's or RemoteIstio's cluster name)")
	f.BoolVar(&o.primary, "primary", false, "the cluster runs istiod (the Istio resource's cluster): allow istiod's serving names")
	f.DurationVar(&o.ttl, "ttl", 8760*time.Hour, "lifetime of the intermediate (capped at the root's expiry)")
	f.StringVar(&o.out, "out", "", "write the Secret manifest to this file (mode 0600) instead of standard output")
	return c
}

// signIntermediate reads the root, signs cluster's intermediate and returns
// the cacerts Secret manifest and a one-line summary.
func signIntermediate(o *signOptions, namespace string, now time.Time) ([]byte, string, error) {
	usage := func(format string, args ...any) error { return &exitError{exitUsage, fmt.Errorf(format, args...)} }
	if o.rootCert == "" || o.rootKey == "" {
		return nil, "", usage("--root-cert and --root-key are required: the root certificate and key files, e.g. root-cert.pem and root-key.pem")
	}
	if errs := validation.IsDNS1123Label(o.cluster); len(errs) > 0 {
		return nil, "", usage("--cluster %q: %s; use the cluster name of the Istio or RemoteIstio resource", o.cluster, errs[0])
	}
	if o.ttl <= 0 {
		return nil, "", usage("--ttl must be positive, e.g. 8760h")
	}
	certPEM, err := os.ReadFile(o.rootCert)
	if err != nil {
		return nil, "", fmt.Errorf("reading the root certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(o.rootKey)
	if err != nil {
		return nil, "", fmt.Errorf("reading the root key: %w", err)
	}
	root, err := ca.ParseKeyPair(certPEM, keyPEM, now)
	if err != nil {
		return nil, "", fmt.Errorf("root %s with key %s: %w", o.rootCert, o.rootKey, err)
	}
	certs, err := ca.ClusterPluginCerts(root, o.cluster, namespace, o.primary, o.ttl, now)
	if err != nil {
		return nil, "", err
	}
	im, _, err := ca.ParsePluginCerts(certs.Data(), now)
	if err != nil {
		return nil, "", fmt.Errorf("the signed cacerts does not parse: %w; this is a meshfleet bug", err)
	}
	s := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: meshca.CACertsSecretName, Namespace: namespace, Annotations: map[string]string{
			"meshfleet.io/description": fmt.Sprintf("Intermediate CA of cluster %s, signed offline by meshctl ca sign-intermediate with root %q (SHA-256 %s). Yours: the operator checks it, never writes or deletes it.",
				o.cluster, root.Cert.Subject.CommonName, ca.Fingerprint(root.Cert)),
		}},
		Type: corev1.SecretTypeOpaque,
		Data: certs.Data(),
	}
	out, err := yaml.Marshal(s)
	if err != nil {
		return nil, "", err
	}
	summary := fmt.Sprintf("intermediate CA for cluster %s signed by %q, valid until %s; apply it to cluster %s: kubectl --context %s apply -f <this file>",
		o.cluster, root.Cert.Subject.CommonName, im.Cert.NotAfter.UTC().Format(time.RFC3339), o.cluster, o.cluster)
	return out, summary, nil
}
