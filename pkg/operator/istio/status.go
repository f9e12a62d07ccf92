package istio

import (
	"github.com/meshfleet/meshfleet/pkg/api/v1beta1"
	"github.com/meshfleet/meshfleet/pkg/operator/conditions"
)

// stepOrder is the order of the install steps, one condition each.
var stepOrder = []string{
	v1beta1.ConditionPreCheckPassed,
	v1beta1.ConditionResourceDefinitionsCreated,
	v1beta1.ConditionControlPlaneDeployed,
	v1beta1.ConditionReady,
}

type outcome = conditions.Outcome

var (
	succeeded = conditions.Succeeded
	failed    = conditions.Failed
	waiting   = conditions.Waiting
	transient = conditions.Transient
)

func newStatus(ist *v1beta1.Istio) conditions.Recorder {
	return conditions.Recorder{Conditions: &ist.Status.Conditions, Generation: ist.Generation, Steps: stepOrder}
}
