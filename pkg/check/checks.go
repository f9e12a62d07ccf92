package check

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/locality/health"
	"github.com/meshfleet/meshfleet/pkg/render"
)

// Status is a check's outcome.
type Status string

// The outcomes of a check. A warning does not fail `meshctl check`.
const (
	StatusOK   Status = "ok"
	StatusWarn Status = "warning"
	StatusFail Status = "failed"
)

// Result is the outcome of one check.
type Result struct {
	Group  string `json:"group"`
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Message says what was found.
	Message string `json:"message,omitempty"`
	// Hint says what to do about a failure or warning.
	Hint string `json:"hint,omitempty"`
}

// Check is one group of checks: Run looks at the facts only.
type Check struct {
	Group string
	Run   func(*Facts) []Result
}

// The groups, in the order they run and print.
const (
	GroupAPI          = "kubernetes-api"
	GroupCRDs         = "meshfleet-crds"
	GroupOperator     = "meshfleet-operator"
	GroupMembers      = "mesh-members"
	GroupCertificates = "certificates"
	GroupIstiod       = "istiod"
	GroupTunnel       = "tunnel"
	GroupLocality     = "locality-server"
	GroupGateways     = "gateways"
)

// Checks are meshctl check's checks, in order.
var Checks = []Check{
	{GroupAPI, apiChecks},
	{GroupCRDs, crdChecks},
	{GroupOperator, operatorChecks},
	{GroupMembers, memberChecks},
	{GroupCertificates, certificateChecks},
	{GroupIstiod, istiodChecks},
	{GroupTunnel, tunnelChecks},
	{GroupLocality, localityChecks},
	{GroupGateways, gatewayChecks},
}

// Run runs checks over f. Each result carries its check's group.
func Run(f *Facts, checks []Check) []Result {
	var out []Result
	for _, c := range checks {
		for _, r := range c.Run(f) {
			r.Group = c.Group
			out = append(out, r)
		}
	}
	return out
}

// Failed reports whether any result failed (warnings do not count).
func Failed(rs []Result) bool {
	return slices.ContainsFunc(rs, func(r Result) bool { return r.Status == StatusFail })
}

// RequiredCRDs must exist and be Established in the primary.
var RequiredCRDs = []string{
	"istios.meshfleet.io",
	"remoteistios.meshfleet.io",
	"destinationrules.networking.istio.io",
	"virtualservices.networking.istio.io",
	"peerauthentications.security.istio.io",
}

// CertificateWarnBefore is how long before expiry a CA certificate is
// reported (the operator renews intermediates a third of their lifetime
// before expiry, so one this close was not renewed).
const CertificateWarnBefore = 7 * 24 * time.Hour

func ok(check, msg string) Result { return Result{Check: check, Status: StatusOK, Message: msg} }
func fail(check, msg, hint string) Result {
	return Result{Check: check, Status: StatusFail, Message: msg, Hint: hint}
}
func warn(check, msg, hint string) Result {
	return Result{Check: check, Status: StatusWarn, Message: msg, Hint: hint}
}

func apiChecks(f *Facts) []Result {
	if f.API.Err != "" {
		return []Result{fail("can reach the primary's Kubernetes API", f.API.Err,
			"check --kubeconfig and --context, and that the API server at "+f.API.Host+" is up")}
	}
	out := []Result{ok("can reach the primary's Kubernetes API", f.API.Host)}
	out = append(out, versionCheck("primary", f.API.Version))
	for _, c := range f.Clusters {
		if c.Role == RoleRemote && c.KubernetesVersion != "" {
			out = append(out, versionCheck(c.Name, c.KubernetesVersion))
		}
	}
	return out
}

func versionCheck(cluster, v string) Result {
	name := fmt.Sprintf("cluster %s runs Kubernetes %s or later", cluster, render.MinKubernetesVersion)
	pv, err := version.ParseGeneric(v)
	if err != nil {
		return warn(name, fmt.Sprintf("cannot parse its version %q", v), "")
	}
	if pv.LessThan(render.MinKubernetesVersion) {
		return fail(name, "it runs "+v, "upgrade cluster "+cluster+"'s control plane")
	}
	return ok(name, v)
}

func crdChecks(f *Facts) []Result {
	if f.API.Err != "" {
		return nil
	}
	if f.CRDsErr != "" {
		return []Result{fail("can list CustomResourceDefinitions", f.CRDsErr, "meshctl check needs get/list on customresourcedefinitions")}
	}
	var out []Result
	for _, name := range RequiredCRDs {
		check := "CRD " + name + " is established"
		crd, found := f.CRDs[name]
		switch {
		case !found && strings.HasSuffix(name, ".meshfleet.io"):
			out = append(out, fail(check, "not found", "install meshfleet: meshctl install (or kubectl apply -f crds/)"))
		case !found:
			out = append(out, fail(check, "not found", "the operator applies Istio's CRDs in step ResourceDefinitionsCreated; see meshctl status"))
		case !crd.Established:
			out = append(out, fail(check, "not Established", "kubectl describe crd "+name))
		default:
			out = append(out, ok(check, ""))
		}
	}
	return out
}

func operatorChecks(f *Facts) []Result {
	if f.API.Err != "" {
		return nil
	}
	var out []Result
	switch op := f.Operator; {
	case op == nil:
		out = append(out, warn("the operator's Deployment is available", "no Deployment meshfleet-operator in "+operatorNamespace,
			"if the operator runs outside the cluster, ignore this; else meshctl install"))
	case op.Err != "":
		out = append(out, fail("the operator's Deployment is available", op.Err, "kubectl -n "+op.Namespace+" get deploy "+op.Name))
	case op.Available < 1:
		out = append(out, fail("the operator's Deployment is available", fmt.Sprintf("%d of %d replicas available", op.Available, op.Replicas),
			"kubectl -n "+op.Namespace+" describe deploy "+op.Name+"; kubectl -n "+op.Namespace+" logs deploy/"+op.Name))
	default:
		out = append(out, ok("the operator's Deployment is available", fmt.Sprintf("%d of %d replicas", op.Available, op.Replicas)))
	}
	if f.ClustersErr != "" {
		return append(out, fail("can read the mesh's resources", f.ClustersErr, "is meshfleet installed? meshctl install"))
	}
	var stale []string
	for _, c := range f.Clusters {
		if c.ObservedGeneration < c.Generation {
			stale = append(stale, c.Resource)
		}
	}
	if len(stale) > 0 {
		out = append(out, fail("the operator has processed every resource's latest spec", "not yet: "+strings.Join(stale, ", "),
			"is the operator running? kubectl -n "+operatorNamespace+" logs deploy/meshfleet-operator"))
	} else {
		out = append(out, ok("the operator has processed every resource's latest spec", fmt.Sprintf("%d resources", len(f.Clusters))))
	}
	return out
}

// operatorNamespace is where meshctl install puts the operator (meshca.Namespace).
const operatorNamespace = "meshfleet-system"

func memberChecks(f *Facts) []Result {
	if f.API.Err != "" || f.ClustersErr != "" {
		return nil
	}
	if len(f.Clusters) == 0 {
		return []Result{fail("the mesh has a control plane", "no Istio resource in "+f.Namespace, "meshctl install, or pass -n with the mesh's namespace")}
	}
	var out []Result
	for _, c := range f.Clusters {
		check := fmt.Sprintf("%s %s is Ready", c.Role, c.Name)
		if c.Phase == string(v1beta1.PhaseReady) {
			msg := ""
			if c.Connection != "" {
				msg = "connected " + strings.ToLower(c.Connection)
			}
			out = append(out, ok(check, msg))
			continue
		}
		hint := "meshctl status shows every condition"
		if c.Phase == string(v1beta1.PhaseUnreachable) {
			hint = "the operator cannot reach " + c.Name + "'s API server"
			if c.Connection == v1beta1.ConnectionTunnel {
				hint += "; is its tunnel agent running? (see the tunnel checks)"
			}
		}
		out = append(out, fail(check, fmt.Sprintf("phase %s: %s", dashed(c.Phase), strings.Join(c.Problems, "; ")), hint))
	}
	return out
}

func certificateChecks(f *Facts) []Result {
	if f.API.Err != "" || f.ClustersErr != "" {
		return nil
	}
	var out []Result
	var root *x509.Certificate
	for _, c := range f.Clusters {
		if c.Role != RolePrimary || c.CA == nil || c.CA.Err != "" {
			continue
		}
		r, err := parseCert(c.CA.RootPEM)
		if err != nil {
			out = append(out, fail("the mesh's root CA is valid", fmt.Sprintf("root-cert.pem of %s's cacerts: %v", c.Name, err),
				"the operator rewrites cacerts from meshfleet-system/meshfleet-root-ca; check the Istio resource's conditions"))
			break
		}
		root = r
		out = append(out, expiryResult("the mesh's root CA is valid", r, f.Now,
			"rotate the root: create a new root Secret and name it in spec.security.caSecretRef"))
		break
	}
	for _, c := range f.Clusters {
		check := fmt.Sprintf("%s's intermediate CA (cacerts) chains to the root and is valid", c.Name)
		switch {
		case c.CA != nil && c.CA.Err != "":
			out = append(out, fail(check, c.CA.Err, "the operator writes cacerts in step CertificatesIssued/ResourceDefinitionsCreated; meshctl status shows why it did not"))
		case c.CA != nil:
			cert, err := parseCert(c.CA.CertPEM)
			if err != nil {
				out = append(out, fail(check, "ca-cert.pem: "+err.Error(), "delete the cacerts Secret; the operator issues a new one"))
				continue
			}
			if root != nil {
				pool := x509.NewCertPool()
				pool.AddCert(root)
				if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: f.Now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
					out = append(out, fail(check, "does not chain to the mesh's root: "+err.Error(),
						"cross-cluster mTLS fails; delete "+c.Name+"'s cacerts Secret and the operator issues one from the current root"))
					continue
				}
			}
			out = append(out, expiryResult(check, cert, f.Now, "the operator renews it before expiry; is it running? (operator checks)"))
		case c.IntermediateExpiry != nil:
			r := ok(check, "expires "+c.IntermediateExpiry.UTC().Format(time.RFC3339)+" (from the resource's status)")
			if c.IntermediateExpiry.Before(f.Now) {
				r = fail(check, "expired "+c.IntermediateExpiry.UTC().Format(time.RFC3339), "is the operator running? (operator checks)")
			}
			out = append(out, r)
		case c.Role == RoleRemote && !slices.ContainsFunc(c.Problems, func(p string) bool { return strings.HasPrefix(p, v1beta1.ConditionCertificatesIssued) }):
			out = append(out, ok(check, "issued (condition CertificatesIssued; its cacerts is not readable from here: "+dashed(c.ReadErr)+")"))
		default:
			out = append(out, fail(check, "not issued", "meshctl status shows the CertificatesIssued condition"))
		}
	}
	return out
}

func expiryResult(check string, c *x509.Certificate, now time.Time, hint string) Result {
	left := c.NotAfter.Sub(now)
	msg := fmt.Sprintf("%s, expires %s", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
	switch {
	case now.Before(c.NotBefore):
		return fail(check, msg+", not valid before "+c.NotBefore.UTC().Format(time.RFC3339), "check the clocks")
	case left <= 0:
		return fail(check, "expired: "+msg, hint)
	case left < CertificateWarnBefore:
		return warn(check, fmt.Sprintf("expires in %s: %s", left.Round(time.Hour), msg), hint)
	}
	return ok(check, msg)
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// IstiodHint says how to give meshctl istiod's debug address.
const IstiodHint = "give istiod's debug address: kubectl -n istio-system port-forward deploy/istiod 15014 and --istiod-debug http://localhost:15014"

func istiodChecks(f *Facts) []Result {
	if f.API.Err != "" || f.ClustersErr != "" {
		return nil
	}
	var out []Result
	for _, c := range f.Clusters {
		if c.Role != RoleRemote || c.ReaderAccess == nil {
			continue
		}
		check := fmt.Sprintf("istiod's credentials for %s are accepted", c.Name)
		switch p := c.ReaderAccess; {
		case p.Code == 401:
			out = append(out, fail(check, c.Name+" refused them (401): "+p.Err,
				"the token in istiod's remote secret was revoked (its service account deleted or recreated?); once the account is back the operator writes one with a new token at its next resync (is the operator running?); deleting Secret "+f.Namespace+"/"+render.RemoteSecretName(c.Name)+" makes it write one at once"))
		case p.Code == 403:
			out = append(out, fail(check, c.Name+" forbids them (403): "+p.Err, "the reader's RBAC in "+c.Name+" is missing; the operator restores it on its next resync"))
		case p.Err != "":
			out = append(out, fail(check, p.Err, "can "+c.Name+"'s API server be reached from here?"))
		default:
			out = append(out, ok(check, ""))
		}
	}
	const reach = "istiod answers on its debug endpoint"
	switch {
	case f.Istiod.URL == "":
		return append(out, warn(reach, "no address for istiod's debug endpoint", IstiodHint))
	case f.Istiod.Err != "":
		return append(out, fail(reach, f.Istiod.Err, "is istiod running? kubectl -n "+f.Namespace+" get pods -l app=istiod; or "+IstiodHint))
	}
	out = append(out, ok(reach, f.Istiod.URL))
	seen := map[string]IstiodCluster{}
	for _, ic := range f.Istiod.Value {
		seen[ic.ID] = ic
	}
	for _, c := range f.Clusters {
		check := fmt.Sprintf("istiod has synced %s", c.Name)
		ic, found := seen[c.Name]
		switch {
		case !found && c.Role == RolePrimary:
			// A primary other than the one istiod runs in has its own istiod.
			continue
		case !found:
			out = append(out, fail(check, "istiod has no remote secret for "+c.Name+": it sends no endpoints of that cluster",
				"the operator writes the remote secret in step Installed of RemoteIstio "+c.Resource+"; meshctl status shows why it did not"))
		case ic.SyncStatus == "synced":
			out = append(out, ok(check, strings.TrimSpace("synced "+ic.SecretName)))
		default:
			out = append(out, fail(check, fmt.Sprintf("istiod reports %s as %q", c.Name, ic.SyncStatus),
				"istiod cannot list "+c.Name+"'s services and endpoints; its log says why (remote cluster "+c.Name+")"))
		}
	}
	return out
}

func tunnelled(f *Facts) []Cluster {
	var out []Cluster
	for _, c := range f.Clusters {
		if c.Role == RoleRemote && c.Connection == v1beta1.ConnectionTunnel {
			out = append(out, c)
		}
	}
	return out
}

// TunnelHint says how to give meshctl the tunnel server's metrics address.
const TunnelHint = "give the tunnel server's metrics address: kubectl -n meshfleet-system port-forward deploy/meshfleet-tunnel-server 9090 and --tunnel-metrics http://localhost:9090/metrics"

func tunnelChecks(f *Facts) []Result {
	remotes := tunnelled(f)
	if len(remotes) == 0 {
		return nil
	}
	const reach = "the tunnel server answers"
	switch {
	case f.Tunnel.URL == "":
		return []Result{warn(reach, "no address for the tunnel server's metrics", TunnelHint)}
	case f.Tunnel.Err != "":
		return []Result{fail(reach, f.Tunnel.Err, "is the tunnel server running? or "+TunnelHint)}
	case !f.Tunnel.Value.Active:
		return []Result{warn(reach, "the server at "+f.Tunnel.URL+" is the standby: it holds no agents", "point --tunnel-metrics at the Service in front of the servers, or at the one holding the Lease meshfleet-tunnel")}
	}
	out := []Result{ok(reach, f.Tunnel.URL)}
	for _, c := range remotes {
		check := fmt.Sprintf("%s's tunnel agents are connected", c.Name)
		n := f.Tunnel.Value.Agents[c.Name]
		if n == 0 {
			out = append(out, fail(check, "no agent of "+c.Name+" is connected: the mesh cannot reach its API",
				"start the agent in "+c.Name+" (kubectl -n meshfleet-system get pods -l app=meshfleet-tunnel-agent there); meshctl cluster join "+c.Name+" --tunnel prints its manifest"))
			continue
		}
		out = append(out, ok(check, fmt.Sprintf("%d agents%s", n, rttSummary(f.Tunnel.Value.RTT[c.Name]))))
	}
	return out
}

func rttSummary(rtts map[string]time.Duration) string {
	if len(rtts) == 0 {
		return ""
	}
	var ds []time.Duration
	for _, d := range rtts {
		ds = append(ds, d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return fmt.Sprintf(", RTT %s", ds[0].Round(10*time.Microsecond))
}

// LocalityHint says how to give meshctl the locality server's debug address.
const LocalityHint = "give the locality server's debug address: kubectl -n istio-system port-forward deploy/meshfleet-locality 9092 and --xds-debug http://localhost:9092"

func localityChecks(f *Facts) []Result {
	l := f.Locality
	if l == nil {
		return nil
	}
	var out []Result
	const published = "the locality server publishes a healthy summary"
	switch l.Verdict.State {
	case health.StateOK:
		out = append(out, ok(published, l.Verdict.Line))
	case health.StateNotRunning:
		out = append(out, fail(published, l.Verdict.Line, "check its pods: kubectl -n "+f.Namespace+" get pods -l app=meshfleet-locality"))
	default:
		out = append(out, fail(published, l.Verdict.Line, "meshctl locality shows the details"))
	}
	const reach = "the locality server answers on its debug endpoint"
	switch {
	case l.Debug.URL == "":
		return append(out, warn(reach, "no address for its debug endpoint", LocalityHint))
	case l.Debug.Err != "":
		return append(out, fail(reach, l.Debug.Err, "is it running? kubectl -n "+f.Namespace+" get pods -l app=meshfleet-locality; or "+LocalityHint))
	}
	role := "standby"
	if l.Debug.Value.Leader {
		role = "writing"
	}
	out = append(out, ok(reach, fmt.Sprintf("%s, %d rules", role, l.Debug.Value.Rules)))
	for _, m := range l.Debug.Value.Members {
		check := fmt.Sprintf("the locality server has synced %s", m.Name)
		if m.Synced {
			out = append(out, ok(check, ""))
		} else {
			out = append(out, fail(check, "not synced since start: its rules are held as they are",
				"can the locality server reach "+m.Name+"? meshctl locality; its log names the error"))
		}
	}
	return out
}

func gatewayChecks(f *Facts) []Result {
	var out []Result
	for _, c := range f.Clusters {
		if !c.Readable {
			continue
		}
		if c.GatewaysErr != "" {
			out = append(out, fail(fmt.Sprintf("can read %s's gateways", c.Name), c.GatewaysErr, ""))
			continue
		}
		for _, g := range c.Gateways {
			check := fmt.Sprintf("%s's gateway %s/%s is available", c.Name, g.Namespace, g.Name)
			if g.Available < 1 {
				out = append(out, fail(check, fmt.Sprintf("%d of %d replicas available", g.Available, g.Replicas),
					fmt.Sprintf("kubectl --context %s -n %s describe deploy %s", c.Name, g.Namespace, g.Name)))
				continue
			}
			out = append(out, ok(check, fmt.Sprintf("%d of %d replicas", g.Available, g.Replicas)))
		}
	}
	return out
}

func dashed(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
