// Package kubeconfig reads the kubeconfigs that users hand to meshfleet in
// Secrets (a RemoteIstio's spec.kubeconfigSecretRef). Only inline
// credentials are accepted: the server, its CA, and a bearer token or a
// client certificate and key. Everything that would make meshfleet run a
// program, read a file, skip TLS verification, go through a proxy or
// impersonate someone is refused before anything runs or is sent.
package kubeconfig

import (
	"fmt"
	"net/url"
	"sort"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Fix is the advice every refusal ends with.
const Fix = "put the credentials inline: server, certificate-authority-data, and either token or client-certificate-data with client-key-data (for a cloud cluster whose kubeconfig runs a login plugin, create a service account token in that cluster and use it as token)"

// Inline parses a kubeconfig and returns the connection of its context, or
// the field errors that make it unacceptable, each naming the field (in the
// kubeconfig's own spelling) and what to do. It never runs, reads or dials
// anything.
func Inline(data []byte) (*rest.Config, field.ErrorList) {
	kc, err := clientcmd.Load(data)
	if err != nil {
		return nil, field.ErrorList{field.Invalid(field.NewPath("kubeconfig"), "<omitted>",
			fmt.Sprintf("not usable: %v; it must be a kubeconfig file (YAML)", err))}
	}
	errs := checkClusters(kc)
	errs = append(errs, checkUsers(kc)...)
	ctxName, ctxErrs := currentContext(kc)
	errs = append(errs, ctxErrs...)
	if len(errs) > 0 {
		return nil, errs
	}
	ctx := kc.Contexts[ctxName]
	cp := field.NewPath("contexts").Key(ctxName).Child("context")
	cluster, ok := kc.Clusters[ctx.Cluster]
	if !ok {
		return nil, field.ErrorList{field.NotFound(cp.Child("cluster"), ctx.Cluster)}
	}
	user, ok := kc.AuthInfos[ctx.AuthInfo]
	if !ok {
		return nil, field.ErrorList{field.NotFound(cp.Child("user"), ctx.AuthInfo)}
	}
	up := field.NewPath("users").Key(ctx.AuthInfo).Child("user")
	hasCert := len(user.ClientCertificateData) > 0 || len(user.ClientKeyData) > 0
	switch {
	case user.Token == "" && !hasCert:
		errs = append(errs, field.Required(up.Child("token"), "the user has no credentials; "+Fix))
	case user.Token != "" && hasCert:
		errs = append(errs, field.Invalid(up.Child("token"), "<omitted>", "give either a token or a client certificate, not both"))
	case hasCert && (len(user.ClientCertificateData) == 0 || len(user.ClientKeyData) == 0):
		errs = append(errs, field.Required(up.Child("client-key-data"), "client-certificate-data and client-key-data go together; give both"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &rest.Config{
		Host:        cluster.Server,
		BearerToken: user.Token,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:     cluster.CertificateAuthorityData,
			CertData:   user.ClientCertificateData,
			KeyData:    user.ClientKeyData,
			ServerName: cluster.TLSServerName,
		},
		DisableCompression: cluster.DisableCompression,
	}, nil
}

func checkClusters(kc *clientcmdapi.Config) field.ErrorList {
	var errs field.ErrorList
	for _, name := range sortedKeys(kc.Clusters) {
		c := kc.Clusters[name]
		p := field.NewPath("clusters").Key(name).Child("cluster")
		u, err := url.Parse(c.Server)
		switch {
		case c.Server == "":
			errs = append(errs, field.Required(p.Child("server"), "give the https:// address of the cluster's API server"))
		case err != nil || u.Host == "":
			errs = append(errs, field.Invalid(p.Child("server"), c.Server, "not a URL; give the https:// address of the cluster's API server"))
		case u.Scheme != "https":
			errs = append(errs, field.Invalid(p.Child("server"), c.Server, "only https is accepted: the operator sends credentials to this address"))
		case u.User != nil:
			errs = append(errs, field.Invalid(p.Child("server"), "<omitted>", "remove the user name and password from the URL"))
		}
		if c.InsecureSkipTLSVerify {
			errs = append(errs, field.Forbidden(p.Child("insecure-skip-tls-verify"),
				"the API server's certificate must be verified; remove it and put the cluster's CA in certificate-authority-data"))
		}
		if c.CertificateAuthority != "" {
			errs = append(errs, field.Forbidden(p.Child("certificate-authority"),
				"file paths are not read; put the CA certificate itself in certificate-authority-data (base64 PEM)"))
		}
		if c.ProxyURL != "" {
			errs = append(errs, field.Forbidden(p.Child("proxy-url"),
				"proxies are not followed; reach the API server directly, or join the cluster through the tunnel"))
		}
	}
	return errs
}

func checkUsers(kc *clientcmdapi.Config) field.ErrorList {
	var errs field.ErrorList
	for _, name := range sortedKeys(kc.AuthInfos) {
		a := kc.AuthInfos[name]
		p := field.NewPath("users").Key(name).Child("user")
		forbid := func(set bool, fieldName, why string) {
			if set {
				errs = append(errs, field.Forbidden(p.Child(fieldName), why+"; "+Fix))
			}
		}
		forbid(a.Exec != nil, "exec", "credential plugins are never run by meshfleet")
		forbid(a.AuthProvider != nil, "auth-provider", "auth providers are not used")
		forbid(a.TokenFile != "", "tokenFile", "file paths are not read")
		forbid(a.ClientCertificate != "", "client-certificate", "file paths are not read")
		forbid(a.ClientKey != "", "client-key", "file paths are not read")
		forbid(a.Username != "" || a.Password != "", "username", "basic authentication is not used")
		forbid(a.Impersonate != "" || a.ImpersonateUID != "" || len(a.ImpersonateGroups) > 0 || len(a.ImpersonateUserExtra) > 0,
			"as", "impersonation is not used")
	}
	return errs
}

// currentContext is the context to use: current-context, or the only one.
func currentContext(kc *clientcmdapi.Config) (string, field.ErrorList) {
	p := field.NewPath("current-context")
	if kc.CurrentContext != "" {
		if _, ok := kc.Contexts[kc.CurrentContext]; !ok {
			return "", field.ErrorList{field.NotFound(p, kc.CurrentContext)}
		}
		return kc.CurrentContext, nil
	}
	switch len(kc.Contexts) {
	case 0:
		return "", field.ErrorList{field.Required(field.NewPath("contexts"), "the kubeconfig has no context; "+Fix)}
	case 1:
		for name := range kc.Contexts {
			return name, nil
		}
	}
	return "", field.ErrorList{field.Required(p, fmt.Sprintf("the kubeconfig has %d contexts (%v) and no current-context; set current-context, or keep only the context to use",
		len(kc.Contexts), sortedKeys(kc.Contexts)))}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
