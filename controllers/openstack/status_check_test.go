package openstack

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

// The kstatus states the status tables of this package expect.
const (
	ready       = "ready"       // Ready True, Reconciling and Stalled False
	progressing = "progressing" // Ready False, Reconciling True, Stalled False
	stalled     = "stalled"     // Ready False, Reconciling False, Stalled True
	untouched   = "untouched"   // no condition set
)

// checkTriple checks that obj's Ready, Reconciling and Stalled are in state want (ready,
// progressing or stalled), that Ready and the True one of the other two carry wantReason, and
// that Ready's message contains each of wantMessage. It returns Ready's message.
func checkTriple(t *testing.T, obj conditions.Getter, want, wantReason string, wantMessage []string) string {
	t.Helper()
	wantStatus := map[string]map[string]metav1.ConditionStatus{
		ready:       {csv1alpha1.ReadyCondition: metav1.ConditionTrue, csv1alpha1.ReconcilingCondition: metav1.ConditionFalse, csv1alpha1.StalledCondition: metav1.ConditionFalse},
		progressing: {csv1alpha1.ReadyCondition: metav1.ConditionFalse, csv1alpha1.ReconcilingCondition: metav1.ConditionTrue, csv1alpha1.StalledCondition: metav1.ConditionFalse},
		stalled:     {csv1alpha1.ReadyCondition: metav1.ConditionFalse, csv1alpha1.ReconcilingCondition: metav1.ConditionFalse, csv1alpha1.StalledCondition: metav1.ConditionTrue},
	}[want]
	if wantStatus == nil {
		t.Fatalf("unknown state %q", want)
	}
	for typ, status := range wantStatus {
		if c := conditions.Get(obj, typ); c == nil || c.Status != status {
			t.Errorf("%s = %+v, want %s", typ, c, status)
		}
	}
	if got := conditions.GetReason(obj, csv1alpha1.ReadyCondition); got != wantReason {
		t.Errorf("Ready reason = %q, want %q", got, wantReason)
	}
	if want != ready {
		// The condition that is True says why, with the same reason.
		active := map[string]string{progressing: csv1alpha1.ReconcilingCondition, stalled: csv1alpha1.StalledCondition}[want]
		if got := conditions.GetReason(obj, active); got != wantReason {
			t.Errorf("%s reason = %q, want %q", active, got, wantReason)
		}
	}
	msg := conditions.GetMessage(obj, csv1alpha1.ReadyCondition)
	for _, w := range wantMessage {
		if !strings.Contains(msg, w) {
			t.Errorf("message %q does not contain %q", msg, w)
		}
	}
	return msg
}
