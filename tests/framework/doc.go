// Package framework is the shared harness of the integration and e2e tests:
// one mesh bring-up (StartMesh: a primary and remotes on real API servers,
// joined directly or through the tunnel, the operator in process, real
// istiod; internal/localmesh, which the sandbox runs too, with the test's
// T handling around it), one operator starter that shows its log tail when the test
// fails (StartOperator), a typed xDS probe (Endpoints, Routes), the
// generated rules istiod holds (GeneratedRules, from /debug/configz), istiod with
// its CA and a workload certificate from it (StartCAIstiod,
// WorkloadCertificate). Deployment rollouts a test must time itself are in
// the fakerollout subpackage; polling is testenv.Eventually.
//
// Every helper takes the *testing.T (or the context) of the caller: no
// harness keeps a test's T, so a subtest fails itself, not its parent.
// Lifetimes follow the test that started them (t.Cleanup; what must outlive
// t.Context(), which is cancelled before cleanups run, runs on
// testenv.Context(t) or a context of its own).
package framework
