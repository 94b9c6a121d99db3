package clusterstack

import (
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
)

// TestSetClusterStackReleaseStatus checks every condition of a ClusterStackRelease, status.ready
// and the reconcile result for each outcome its steps report.
func TestSetClusterStackReleaseStatus(t *testing.T) {
	t.Parallel()
	const drift = 10 * time.Minute
	var (
		registryDown = errors.New("registry down")
		readFailed   = errors.New("reading OpenStackClusterStackRelease: connection refused")
		invalid      = fmt.Errorf("materialising release: %w", &release.InvalidError{Err: release.ErrMissingFile})
		notPublished = fmt.Errorf("materialising release: %w", source.ErrNotFound)
		unauthorized = fmt.Errorf("listing tags: %w", source.ErrUnauthorized)
		missingKind  = &apply.MissingKindsError{Kinds: []schema.GroupVersionKind{{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackServerGroup"}}}
		forbidden    = outcome.StallRetry(csv1alpha1.ForbiddenReason, forbiddenRetryInterval, "Nothing applied: the operator is not allowed to write Image.openstack.k-orc.cloud")
		noStack      = outcome.Wait(NoClusterStackReason, releaseRetryInterval, "No ClusterStack of this namespace provides this release")
	)
	ready := condTrue(csv1alpha1.ReadyReason)
	// allDone is what a converged release with a provider object has.
	allDone := map[string]cond{
		csv1alpha1.ReleaseAvailableCondition: ready,
		csv1alpha1.ProviderReadyCondition:    ready,
		csv1alpha1.ResourcesAppliedCondition: ready,
		csv1alpha1.ReadyCondition:            ready,
	}
	done := func(overrides map[string]error) map[string]error {
		steps := map[string]error{
			csv1alpha1.ReleaseAvailableCondition: nil,
			csv1alpha1.ProviderReadyCondition:    nil,
			csv1alpha1.ResourcesAppliedCondition: nil,
		}
		for k, v := range overrides {
			steps[k] = v
		}
		return steps
	}
	// failing returns the conditions of a release whose step condition failed with reason and
	// msg: Ready says the same, and Reconciling or Stalled too.
	failing := func(step, reason, msg string, stalled bool) map[string]cond {
		want := map[string]cond{
			step:                      condFalse(reason, msg),
			csv1alpha1.ReadyCondition: condFalse(reason, msg),
		}
		if stalled {
			want[csv1alpha1.StalledCondition] = condActive(reason, msg)
		} else {
			want[csv1alpha1.ReconcilingCondition] = condActive(reason, msg)
		}
		return want
	}

	tests := []struct {
		name        string
		noProvider  bool
		before      map[string]cond
		beforeReady bool
		rep         releaseReport
		want        map[string]cond
		wantReady   bool
		wantResult  ctrl.Result
		wantErr     error
		wantK8s     string
	}{{
		name:       "every step done",
		rep:        releaseReport{steps: done(nil), kubernetesVersion: "v1.32.5", driftCheck: drift},
		want:       allDone,
		wantReady:  true,
		wantResult: ctrl.Result{RequeueAfter: drift},
		wantK8s:    "v1.32.5",
	}, {
		name:       "done without a provider object: ProviderReady goes",
		noProvider: true,
		before:     map[string]cond{csv1alpha1.ProviderReadyCondition: condFalse(csv1alpha1.ProviderNotReadyReason, "old")},
		rep:        releaseReport{steps: done(nil), driftCheck: drift},
		want: map[string]cond{
			csv1alpha1.ReleaseAvailableCondition: ready,
			csv1alpha1.ResourcesAppliedCondition: ready,
			csv1alpha1.ReadyCondition:            ready,
		},
		wantReady:  true,
		wantResult: ctrl.Result{RequeueAfter: drift},
	}, {
		name: "ORC Images not Available",
		rep:  releaseReport{steps: done(nil), imagesWaiting: []string{"Image a (importing)", "Image b (not found)"}, driftCheck: drift},
		want: fromMaps(allDone, map[string]cond{
			csv1alpha1.ReadyCondition:       condFalse(ImagesNotAvailableReason, "Waiting for ORC Images to be Available: Image a (importing), Image b (not found)"),
			csv1alpha1.ReconcilingCondition: condActive(ImagesNotAvailableReason, "Waiting for ORC Images to be Available: Image a (importing), Image b (not found)"),
		}),
		wantResult: ctrl.Result{RequeueAfter: drift},
	}, {
		name:   "no ClusterStack provides the release",
		before: allDone, beforeReady: true,
		rep:        releaseReport{steps: map[string]error{csv1alpha1.ReleaseAvailableCondition: noStack}, err: noStack},
		want:       fromMaps(allDone, failing(csv1alpha1.ReleaseAvailableCondition, NoClusterStackReason, noStack.Message, false)),
		wantResult: ctrl.Result{RequeueAfter: releaseRetryInterval},
	}, {
		name:       "invalid release",
		rep:        releaseReport{steps: map[string]error{csv1alpha1.ReleaseAvailableCondition: releaseFailure(invalid)}, err: releaseFailure(invalid)},
		want:       failing(csv1alpha1.ReleaseAvailableCondition, csv1alpha1.InvalidReleaseReason, invalid.Error(), true),
		wantResult: ctrl.Result{},
	}, {
		name:       "release not published yet",
		rep:        releaseReport{steps: map[string]error{csv1alpha1.ReleaseAvailableCondition: releaseFailure(notPublished)}, err: releaseFailure(notPublished)},
		want:       failing(csv1alpha1.ReleaseAvailableCondition, csv1alpha1.ReleaseSourceErrorReason, notPublished.Error(), false),
		wantResult: ctrl.Result{RequeueAfter: releaseRetryInterval},
	}, {
		name:       "source refuses the credentials",
		rep:        releaseReport{steps: map[string]error{csv1alpha1.ReleaseAvailableCondition: releaseFailure(unauthorized)}, err: releaseFailure(unauthorized)},
		want:       failing(csv1alpha1.ReleaseAvailableCondition, csv1alpha1.ReleaseSourceErrorReason, unauthorized.Error(), true),
		wantResult: ctrl.Result{RequeueAfter: releaseRetryInterval},
	}, {
		name:    "registry outage",
		rep:     releaseReport{steps: map[string]error{csv1alpha1.ReleaseAvailableCondition: releaseFailure(registryDown)}, err: releaseFailure(registryDown)},
		want:    failing(csv1alpha1.ReleaseAvailableCondition, csv1alpha1.ReleaseSourceErrorReason, "registry down", false),
		wantErr: registryDown,
	}, {
		name:   "provider object not ready: later steps keep their conditions",
		before: allDone, beforeReady: true,
		rep: releaseReport{
			steps: map[string]error{csv1alpha1.ReleaseAvailableCondition: nil, csv1alpha1.ProviderReadyCondition: outcome.Wait(csv1alpha1.ProviderNotReadyReason, 0, "OpenStackClusterStackRelease p is not ready: image failed to import")},
			err:   outcome.Wait(csv1alpha1.ProviderNotReadyReason, 0, "OpenStackClusterStackRelease p is not ready: image failed to import"),
		},
		want:       fromMaps(allDone, failing(csv1alpha1.ProviderReadyCondition, csv1alpha1.ProviderNotReadyReason, "OpenStackClusterStackRelease p is not ready: image failed to import", false)),
		wantResult: ctrl.Result{},
	}, {
		name:   "reading the provider object fails: its condition stays",
		before: allDone, beforeReady: true,
		rep: releaseReport{
			steps: map[string]error{csv1alpha1.ReleaseAvailableCondition: nil, csv1alpha1.ProviderReadyCondition: readFailed},
			err:   readFailed,
		},
		want:      allDone,
		wantReady: true,
		wantErr:   readFailed,
	}, {
		name:   "reading a new provider object fails: Ready waits for it",
		before: map[string]cond{csv1alpha1.ReleaseAvailableCondition: ready, csv1alpha1.ResourcesAppliedCondition: ready, csv1alpha1.ReadyCondition: ready},
		rep: releaseReport{
			steps: map[string]error{csv1alpha1.ReleaseAvailableCondition: nil, csv1alpha1.ProviderReadyCondition: readFailed},
			err:   readFailed,
		},
		want: map[string]cond{
			csv1alpha1.ReleaseAvailableCondition: ready,
			csv1alpha1.ResourcesAppliedCondition: ready,
			csv1alpha1.ReadyCondition:            condFalse(csv1alpha1.ProgressingReason, "Waiting for ProviderReady"),
			csv1alpha1.ReconcilingCondition:      condActive(csv1alpha1.ProgressingReason, "Waiting for ProviderReady"),
		},
		wantErr: readFailed,
	}, {
		name: "chart does not render",
		rep: releaseReport{
			steps: done(map[string]error{csv1alpha1.ResourcesAppliedCondition: outcome.Stall(csv1alpha1.InvalidReleaseReason, "Rendering the cluster-class chart: template: bomb")}),
			err:   outcome.Stall(csv1alpha1.InvalidReleaseReason, "Rendering the cluster-class chart: template: bomb"),
		},
		want:       fromMaps(allDone, failing(csv1alpha1.ResourcesAppliedCondition, csv1alpha1.InvalidReleaseReason, "Rendering the cluster-class chart: template: bomb", true)),
		wantResult: ctrl.Result{},
	}, {
		name: "rendering unavailable",
		rep: releaseReport{
			steps: done(map[string]error{csv1alpha1.ResourcesAppliedCondition: outcome.Retry(csv1alpha1.ProgressingReason, fmt.Errorf("rendering the cluster-class chart: %w", registryDown))}),
			err:   outcome.Retry(csv1alpha1.ProgressingReason, fmt.Errorf("rendering the cluster-class chart: %w", registryDown)),
		},
		want:    fromMaps(allDone, failing(csv1alpha1.ResourcesAppliedCondition, csv1alpha1.ProgressingReason, "rendering the cluster-class chart: registry down", false)),
		wantErr: registryDown,
	}, {
		name: "missing CRD",
		rep: releaseReport{
			steps: done(map[string]error{csv1alpha1.ResourcesAppliedCondition: missingAPI(missingKind)}),
			err:   missingAPI(missingKind),
		},
		want:       fromMaps(allDone, failing(csv1alpha1.ResourcesAppliedCondition, csv1alpha1.MissingAPIReason, "Nothing applied: "+missingKind.Error()+". For OpenStackServerGroup (infrastructure.cluster.x-k8s.io/v1beta1): install the Cluster API infrastructure provider (e.g. the OpenStack provider, CAPO)", true)),
		wantResult: ctrl.Result{RequeueAfter: missingAPIRetryInterval},
	}, {
		name:       "forbidden kinds",
		rep:        releaseReport{steps: done(map[string]error{csv1alpha1.ResourcesAppliedCondition: forbidden}), err: forbidden},
		want:       fromMaps(allDone, failing(csv1alpha1.ResourcesAppliedCondition, csv1alpha1.ForbiddenReason, forbidden.Message, true)),
		wantResult: ctrl.Result{RequeueAfter: forbiddenRetryInterval},
	}, {
		name: "conflicts with another field manager",
		rep: releaseReport{
			steps: done(map[string]error{csv1alpha1.ResourcesAppliedCondition: outcome.StallRetry(csv1alpha1.ApplyFailedReason, drift, "Applying: ClusterClass c: fields owned by someone")}),
			err:   outcome.StallRetry(csv1alpha1.ApplyFailedReason, drift, "Applying: ClusterClass c: fields owned by someone"),
		},
		want:       fromMaps(allDone, failing(csv1alpha1.ResourcesAppliedCondition, csv1alpha1.ApplyFailedReason, "Applying: ClusterClass c: fields owned by someone", true)),
		wantResult: ctrl.Result{RequeueAfter: drift},
	}, {
		name: "apply fails",
		rep: releaseReport{
			steps: done(map[string]error{csv1alpha1.ResourcesAppliedCondition: outcome.Retry(csv1alpha1.ApplyFailedReason, registryDown)}),
			err:   outcome.Retry(csv1alpha1.ApplyFailedReason, registryDown),
		},
		want:    fromMaps(allDone, failing(csv1alpha1.ResourcesAppliedCondition, csv1alpha1.ApplyFailedReason, "registry down", false)),
		wantErr: registryDown,
	}, {
		name:   "recovery removes Reconciling",
		before: fromMaps(allDone, failing(csv1alpha1.ResourcesAppliedCondition, csv1alpha1.ApplyFailedReason, "x", false)),
		rep:    releaseReport{steps: done(nil), driftCheck: drift},
		want:   allDone, wantReady: true,
		wantResult: ctrl.Result{RequeueAfter: drift},
	}, {
		name:   "a stall ends Reconciling",
		before: fromMaps(allDone, failing(csv1alpha1.ResourcesAppliedCondition, csv1alpha1.ApplyFailedReason, "registry down", false)),
		rep: releaseReport{
			steps: done(map[string]error{csv1alpha1.ResourcesAppliedCondition: outcome.Stall(csv1alpha1.InvalidReleaseReason, "Nothing applied: no ClusterClass")}),
			err:   outcome.Stall(csv1alpha1.InvalidReleaseReason, "Nothing applied: no ClusterClass"),
		},
		want:       fromMaps(allDone, failing(csv1alpha1.ResourcesAppliedCondition, csv1alpha1.InvalidReleaseReason, "Nothing applied: no ClusterClass", true)),
		wantResult: ctrl.Result{},
	}, {
		name:       "progress ends Stalled",
		before:     fromMaps(allDone, failing(csv1alpha1.ReleaseAvailableCondition, csv1alpha1.ReleaseSourceErrorReason, unauthorized.Error(), true)),
		rep:        releaseReport{steps: map[string]error{csv1alpha1.ReleaseAvailableCondition: noStack}, err: noStack},
		want:       fromMaps(allDone, failing(csv1alpha1.ReleaseAvailableCondition, NoClusterStackReason, noStack.Message, false)),
		wantResult: ctrl.Result{RequeueAfter: releaseRetryInterval},
	}, {
		name:   "deletion waits for Clusters",
		before: fromMaps(allDone, map[string]cond{csv1alpha1.StalledCondition: condActive("Old", "old")}), beforeReady: true,
		rep: releaseReport{deletion: true, err: outcome.Wait(csv1alpha1.InUseReason, 0, "ClusterClass c is used by Clusters a, b: delete them or move them to another ClusterClass first")},
		want: fromMaps(allDone, map[string]cond{
			csv1alpha1.ReadyCondition:       condFalse(csv1alpha1.InUseReason, "ClusterClass c is used by Clusters a, b: delete them or move them to another ClusterClass first"),
			csv1alpha1.ReconcilingCondition: condActive(csv1alpha1.InUseReason, "ClusterClass c is used by Clusters a, b: delete them or move them to another ClusterClass first"),
		}),
		wantResult: ctrl.Result{},
	}, {
		name:   "deletion waits for objects",
		before: allDone, beforeReady: true,
		rep: releaseReport{deletion: true, err: outcome.Wait(csv1alpha1.DeletingReason, deleteWaitInterval, "Waiting for 2 objects to be deleted")},
		want: fromMaps(allDone, map[string]cond{
			csv1alpha1.ReadyCondition:       condFalse(csv1alpha1.DeletingReason, "Waiting for 2 objects to be deleted"),
			csv1alpha1.ReconcilingCondition: condActive(csv1alpha1.DeletingReason, "Waiting for 2 objects to be deleted"),
		}),
		wantResult: ctrl.Result{RequeueAfter: deleteWaitInterval},
	}, {
		name:   "deletion fails: nothing changes",
		before: allDone, beforeReady: true,
		rep:       releaseReport{deletion: true, err: readFailed},
		want:      allDone,
		wantReady: true,
		wantErr:   readFailed,
	}, {
		name:   "deletion done",
		before: allDone, beforeReady: true,
		rep:        releaseReport{deletion: true},
		want:       allDone,
		wantReady:  true,
		wantResult: ctrl.Result{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			csr := &csv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "openstack-scs-1-32-v1"}}
			if !tt.noProvider {
				csr.Spec.ProviderRef = &corev1.ObjectReference{Kind: providerKind, Name: "openstack-scs-1-32-v1"}
			}
			withConditions(csr, tt.before)
			csr.Status.Ready = tt.beforeReady
			res, err := setClusterStackReleaseStatus(csr, tt.rep)
			for _, d := range diffConditions(csr, tt.want) {
				t.Error(d)
			}
			if csr.Status.Ready != tt.wantReady {
				t.Errorf("status.ready = %t, want %t", csr.Status.Ready, tt.wantReady)
			}
			if csr.Status.KubernetesVersion != tt.wantK8s {
				t.Errorf("status.kubernetesVersion = %q, want %q", csr.Status.KubernetesVersion, tt.wantK8s)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if res != tt.wantResult {
				t.Errorf("result = %+v, want %+v", res, tt.wantResult)
			}
		})
	}
}

// TestReleaseFailure checks that each class of release error gets this kind's reason and
// outcome.
func TestReleaseFailure(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		err        error
		wantReason string
		wantStall  bool
		wantWait   bool
	}{
		{name: "invalid", err: &release.InvalidError{Err: release.ErrMissingFile}, wantReason: csv1alpha1.InvalidReleaseReason, wantStall: true},
		{name: "too large", err: source.ErrTooLarge, wantReason: csv1alpha1.InvalidReleaseReason, wantStall: true},
		{name: "not published", err: source.ErrNotFound, wantReason: csv1alpha1.ReleaseSourceErrorReason, wantWait: true},
		{name: "no source", err: source.ErrNoSource, wantReason: csv1alpha1.ReleaseSourceErrorReason, wantStall: true},
		{name: "outage", err: errors.New("connection refused"), wantReason: csv1alpha1.ReleaseSourceErrorReason},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := releaseFailure(fmt.Errorf("materialising: %w", tt.err))
			s, stalled := outcome.AsStalled(got)
			w, waiting := outcome.AsWaiting(got)
			tr, transient := outcome.AsTransient(got)
			if stalled != tt.wantStall || waiting != tt.wantWait || transient != (!tt.wantStall && !tt.wantWait) {
				t.Fatalf("outcome %T, want stall %t wait %t", got, tt.wantStall, tt.wantWait)
			}
			var reason string
			switch {
			case stalled:
				reason = s.Reason
			case waiting:
				reason = w.Reason
			default:
				reason = tr.Reason
				if !errors.Is(got, tt.err) {
					t.Errorf("the transient failure lost its cause: %v", got)
				}
			}
			if reason != tt.wantReason {
				t.Errorf("reason = %s, want %s", reason, tt.wantReason)
			}
		})
	}
}
