package clusteraddon

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
)

// TestSetClusterAddonStatus turns every outcome the steps report into the ClusterAddon's
// conditions, status.ready and the reconcile result.
func TestSetClusterAddonStatus(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection refused")
	cond := func(typ string, ok bool, reason, msg string) metav1.Condition {
		return metaCondition(typ, ok, reason, msg)
	}
	// ready are the conditions of a ClusterAddon that was ready before this reconcile.
	ready := []metav1.Condition{
		cond(csv1alpha1.ReadyCondition, true, csv1alpha1.ReadyReason, "2 addon objects of c applied"),
		cond(csv1alpha1.ReconcilingCondition, false, csv1alpha1.ReadyReason, ""),
		cond(csv1alpha1.StalledCondition, false, csv1alpha1.ReadyReason, ""),
		cond(csv1alpha1.ClusterReachableCondition, true, csv1alpha1.ReadyReason, ""),
		cond(csv1alpha1.ResourcesAppliedCondition, true, csv1alpha1.ReadyReason, ""),
	}
	stalled := func(reason, msg string) []metav1.Condition {
		return []metav1.Condition{
			cond(csv1alpha1.ReadyCondition, false, reason, msg),
			cond(csv1alpha1.ReconcilingCondition, false, reason, ""),
			cond(csv1alpha1.StalledCondition, true, reason, msg),
		}
	}
	progressing := func(reason, msg string) []metav1.Condition {
		return []metav1.Condition{
			cond(csv1alpha1.ReadyCondition, false, reason, msg),
			cond(csv1alpha1.ReconcilingCondition, true, reason, msg),
			cond(csv1alpha1.StalledCondition, false, csv1alpha1.ProgressingReason, ""),
		}
	}
	reachable := cond(csv1alpha1.ClusterReachableCondition, true, csv1alpha1.ReadyReason, "")
	applied := cond(csv1alpha1.ResourcesAppliedCondition, true, csv1alpha1.ReadyReason, "")
	with := func(conds []metav1.Condition, more ...metav1.Condition) []metav1.Condition {
		return append(slices.Clone(conds), more...)
	}

	tests := map[string]struct {
		before    []metav1.Condition
		rep       report
		want      []metav1.Condition
		wantReady bool
		wantRes   ctrl.Result
		wantErr   error
	}{
		"ready": {
			rep:       report{reached: ptr.To(true), readyMsg: "3 addon objects of c applied", requeue: 5 * time.Minute},
			want:      with([]metav1.Condition{cond(csv1alpha1.ReadyCondition, true, csv1alpha1.ReadyReason, "3 addon objects of c applied"), cond(csv1alpha1.ReconcilingCondition, false, csv1alpha1.ReadyReason, ""), cond(csv1alpha1.StalledCondition, false, csv1alpha1.ReadyReason, "")}, reachable, applied),
			wantReady: true,
			wantRes:   ctrl.Result{RequeueAfter: 5 * time.Minute},
		},
		"no clusterRef stalls": {
			rep:  report{err: outcome.Stall(csv1alpha1.InvalidReleaseReason, "spec.clusterRef is not set")},
			want: stalled(csv1alpha1.InvalidReleaseReason, "spec.clusterRef is not set"),
		},
		"control plane not initialized waits for the Cluster's event": {
			rep:  report{err: outcome.Wait(csv1alpha1.ControlPlaneNotInitializedReason, 0, "Waiting for the control plane of Cluster a to be initialized")},
			want: progressing(csv1alpha1.ControlPlaneNotInitializedReason, "Waiting for the control plane of Cluster a to be initialized"),
		},
		"invalid release stalls": {
			rep:  report{err: outcome.Stall(csv1alpha1.InvalidReleaseReason, "Release r is invalid: bad")},
			want: stalled(csv1alpha1.InvalidReleaseReason, "Release r is invalid: bad"),
		},
		"release not there yet": {
			rep:     report{err: outcome.Wait(csv1alpha1.ReleaseNotAvailableReason, 30*time.Second, "Release r is not available yet: not published")},
			want:    progressing(csv1alpha1.ReleaseNotAvailableReason, "Release r is not available yet: not published"),
			wantRes: ctrl.Result{RequeueAfter: 30 * time.Second},
		},
		"release source refused stalls and looks again": {
			rep:     report{err: outcome.StallRetry(csv1alpha1.ReleaseSourceErrorReason, 30*time.Second, "Release r cannot be read from its source: unauthorized")},
			want:    stalled(csv1alpha1.ReleaseSourceErrorReason, "Release r cannot be read from its source: unauthorized"),
			wantRes: ctrl.Result{RequeueAfter: 30 * time.Second},
		},
		"release transient failure backs off": {
			rep:     report{err: outcome.Retry(csv1alpha1.ReleaseNotAvailableReason, fmt.Errorf("getting release r: %w", boom))},
			want:    progressing(csv1alpha1.ReleaseNotAvailableReason, "getting release r: connection refused"),
			wantErr: boom,
		},
		"kubeconfig missing": {
			before:  ready,
			rep:     report{reached: ptr.To(false), err: outcome.Wait(csv1alpha1.KubeconfigMissingReason, 20*time.Second, "Waiting for the kubeconfig Secret a-kubeconfig")},
			want:    with(progressing(csv1alpha1.KubeconfigMissingReason, "Waiting for the kubeconfig Secret a-kubeconfig"), cond(csv1alpha1.ClusterReachableCondition, false, csv1alpha1.KubeconfigMissingReason, "Waiting for the kubeconfig Secret a-kubeconfig"), applied),
			wantRes: ctrl.Result{RequeueAfter: 20 * time.Second},
		},
		"kubeconfig invalid": {
			rep:     report{reached: ptr.To(false), err: outcome.Wait(csv1alpha1.KubeconfigInvalidReason, 20*time.Second, "no usable kubeconfig")},
			want:    with(progressing(csv1alpha1.KubeconfigInvalidReason, "no usable kubeconfig"), cond(csv1alpha1.ClusterReachableCondition, false, csv1alpha1.KubeconfigInvalidReason, "no usable kubeconfig")),
			wantRes: ctrl.Result{RequeueAfter: 20 * time.Second},
		},
		"workload cluster unreachable": {
			rep:     report{reached: ptr.To(false), err: outcome.Wait(csv1alpha1.ClusterUnreachableReason, 20*time.Second, "does not answer")},
			want:    with(progressing(csv1alpha1.ClusterUnreachableReason, "does not answer"), cond(csv1alpha1.ClusterReachableCondition, false, csv1alpha1.ClusterUnreachableReason, "does not answer")),
			wantRes: ctrl.Result{RequeueAfter: 20 * time.Second},
		},
		"waiting for a pre-condition": {
			rep:     report{reached: ptr.To(true), err: outcome.Wait(csv1alpha1.WaitingForPreConditionReason, 10*time.Second, "pre")},
			want:    with(progressing(csv1alpha1.WaitingForPreConditionReason, "pre"), reachable),
			wantRes: ctrl.Result{RequeueAfter: 10 * time.Second},
		},
		"waiting for a post-condition keeps what was applied": {
			before:  ready,
			rep:     report{reached: ptr.To(true), err: outcome.Wait(csv1alpha1.WaitingForPostConditionReason, 10*time.Second, "post")},
			want:    with(progressing(csv1alpha1.WaitingForPostConditionReason, "post"), reachable, applied),
			wantRes: ctrl.Result{RequeueAfter: 10 * time.Second},
		},
		"values wait for the Cluster": {
			rep:     report{reached: ptr.To(true), err: outcome.Wait(csv1alpha1.WaitingForClusterReason, 10*time.Second, "values")},
			want:    with(progressing(csv1alpha1.WaitingForClusterReason, "values"), reachable),
			wantRes: ctrl.Result{RequeueAfter: 10 * time.Second},
		},
		"chart repository unavailable": {
			rep:     report{reached: ptr.To(true), err: outcome.Wait(csv1alpha1.DependencyUnavailableReason, 30*time.Second, "repo down")},
			want:    with(progressing(csv1alpha1.DependencyUnavailableReason, "repo down"), reachable),
			wantRes: ctrl.Result{RequeueAfter: 30 * time.Second},
		},
		"chart dependency unresolvable": {
			rep:     report{reached: ptr.To(true), err: outcome.StallRetry(csv1alpha1.DependencyUnresolvableReason, 5*time.Minute, "no version")},
			want:    with(stalled(csv1alpha1.DependencyUnresolvableReason, "no version"), reachable),
			wantRes: ctrl.Result{RequeueAfter: 5 * time.Minute},
		},
		"chart that fails stalls and keeps what was applied": {
			before: ready,
			rep:    report{reached: ptr.To(true), err: outcome.Stall(csv1alpha1.InvalidReleaseReason, "Release r: fails on purpose")},
			want:   with(stalled(csv1alpha1.InvalidReleaseReason, "Release r: fails on purpose"), reachable, applied),
		},
		"objects refused": {
			before:  ready,
			rep:     report{reached: ptr.To(true), err: failedApply(outcome.Wait(csv1alpha1.ApplyFailedReason, 30*time.Second, "Applying addons of c: refused"))},
			want:    with(progressing(csv1alpha1.ApplyFailedReason, "Applying addons of c: refused"), reachable, cond(csv1alpha1.ResourcesAppliedCondition, false, csv1alpha1.ApplyFailedReason, "Applying addons of c: refused")),
			wantRes: ctrl.Result{RequeueAfter: 30 * time.Second},
		},
		"kind not served": {
			rep:     report{reached: ptr.To(true), err: failedApply(outcome.Wait(csv1alpha1.MissingAPIReason, 30*time.Second, "no CRD"))},
			want:    with(progressing(csv1alpha1.MissingAPIReason, "no CRD"), reachable, cond(csv1alpha1.ResourcesAppliedCondition, false, csv1alpha1.MissingAPIReason, "no CRD")),
			wantRes: ctrl.Result{RequeueAfter: 30 * time.Second},
		},
		"apply failed transiently": {
			rep:     report{reached: ptr.To(true), err: failedApply(outcome.Retry(csv1alpha1.ApplyFailedReason, fmt.Errorf("applying addons of c: %w", boom)))},
			want:    with(progressing(csv1alpha1.ApplyFailedReason, "applying addons of c: connection refused"), reachable, cond(csv1alpha1.ResourcesAppliedCondition, false, csv1alpha1.ApplyFailedReason, "applying addons of c: connection refused")),
			wantErr: boom,
		},
		"plain error is no news": {
			before:    ready,
			rep:       report{reached: ptr.To(true), err: fmt.Errorf("reading ControlPlane cp: %w", boom)},
			want:      ready,
			wantReady: true,
			wantErr:   boom,
		},
		"paused Cluster keeps what was seen and says Paused": {
			before:    ready,
			rep:       report{paused: "Cluster a is paused (spec.paused): no addons are applied until it resumes"},
			want:      with(ready, cond(csv1alpha1.PausedCondition, true, csv1alpha1.ClusterPausedReason, "Cluster a is paused (spec.paused): no addons are applied until it resumes")),
			wantReady: true,
		},
		"paused Cluster of a stalled ClusterAddon stays stalled": {
			before: stalled(csv1alpha1.InvalidReleaseReason, "Release r is invalid: bad"),
			rep:    report{paused: "Cluster a carries the annotation cluster.x-k8s.io/paused: no addons are applied until it is removed"},
			want:   with(stalled(csv1alpha1.InvalidReleaseReason, "Release r is invalid: bad"), cond(csv1alpha1.PausedCondition, true, csv1alpha1.ClusterPausedReason, "Cluster a carries the annotation cluster.x-k8s.io/paused: no addons are applied until it is removed")),
		},
		"gone": {
			before:    ready,
			rep:       report{gone: true},
			want:      ready,
			wantReady: true,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ca := &csv1alpha1.ClusterAddon{}
			ca.Status.Conditions = slices.Clone(tt.before)
			res, err := setClusterAddonStatus(ca, tt.rep)
			if res != tt.wantRes {
				t.Errorf("result = %+v, want %+v", res, tt.wantRes)
			}
			if (err == nil) != (tt.wantErr == nil) || !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if ca.Status.Ready != tt.wantReady {
				t.Errorf("status.ready = %v, want %v", ca.Status.Ready, tt.wantReady)
			}
			if diff := cmp.Diff(sortedConditions(tt.want), sortedConditions(ca.Status.Conditions)); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
		})
	}
}

// sortedConditions returns conds by type, without transition times.
func sortedConditions(conds []metav1.Condition) []metav1.Condition {
	out := slices.Clone(conds)
	for i := range out {
		out[i].LastTransitionTime = metav1.Time{}
	}
	slices.SortFunc(out, func(a, b metav1.Condition) int { return strings.Compare(a.Type, b.Type) })
	return out
}
