package clusterstack

import (
	"errors"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
)

// TestSetClusterStackStatus checks every condition of a ClusterStack, its summary fields and
// the reconcile result for each outcome its steps report.
func TestSetClusterStackStatus(t *testing.T) {
	t.Parallel()
	const nextCheck = 4 * time.Minute
	rel := func(version string) name.Release {
		n, err := name.Parse("openstack-scs-1-32-" + version)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	csrReady := func(n string) *csv1alpha1.ClusterStackRelease {
		csr := &csv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Name: n}}
		csr.Status.Ready = true
		conditions.Set(csr, metav1.Condition{Type: csv1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: csv1alpha1.ReadyReason})
		return csr
	}
	csrProgressing := func(n string) *csv1alpha1.ClusterStackRelease {
		csr := &csv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Name: n}}
		conditions.Set(csr, metav1.Condition{Type: csv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: ImagesNotAvailableReason, Message: "Waiting for ORC Images"})
		return csr
	}
	csrStalled := func(n string) *csv1alpha1.ClusterStackRelease {
		csr := &csv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Name: n}}
		conditions.Set(csr, metav1.Condition{Type: csv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: csv1alpha1.MissingAPIReason, Message: "Nothing applied"})
		conditions.Set(csr, metav1.Condition{Type: csv1alpha1.StalledCondition, Status: metav1.ConditionTrue, Reason: csv1alpha1.MissingAPIReason, Message: "Nothing applied"})
		return csr
	}
	releases := func(csrs ...*csv1alpha1.ClusterStackRelease) map[string]*csv1alpha1.ClusterStackRelease {
		out := map[string]*csv1alpha1.ClusterStackRelease{}
		for _, c := range csrs {
			out[c.Name] = c
		}
		return out
	}
	var (
		registryDown = errors.New("listing tags: 503 Service Unavailable")
		unauthorized = fmt.Errorf("listing tags: %w", source.ErrUnauthorized)
		readFailed   = errors.New("listing the Clusters of namespace ns: connection refused")
		syncFailed   = errors.New("creating ClusterStackRelease openstack-scs-1-32-v2: admission webhook denied")
		conflict     = fmt.Errorf("updating ClusterStackRelease openstack-scs-1-32-v1: %w", apierrors.NewConflict(schema.GroupResource{Resource: "clusterstackreleases"}, "openstack-scs-1-32-v1", errors.New("changed")))
		templateErr  = errors.New("OpenStackClusterStackReleaseTemplate ns/absent of spec.providerRef not found: create it")
	)
	const (
		v1 = "openstack-scs-1-32-v1"
		v2 = "openstack-scs-1-32-v2"
	)
	ready := condTrue(csv1alpha1.ReadyReason)
	converged := map[string]cond{csv1alpha1.ReleasesSyncedCondition: ready, csv1alpha1.ReadyCondition: ready}
	// failing returns the conditions of a ClusterStack whose condition cond failed with reason
	// and msg: Ready says the same, and Reconciling or Stalled too.
	failing := func(condition, reason, msg string, stalled bool) map[string]cond {
		want := map[string]cond{condition: condFalse(reason, msg), csv1alpha1.ReadyCondition: condFalse(reason, msg)}
		if stalled {
			want[csv1alpha1.StalledCondition] = condActive(reason, msg)
		} else {
			want[csv1alpha1.ReconcilingCondition] = condActive(reason, msg)
		}
		return want
	}
	synced := csv1alpha1.ReleasesSyncedCondition

	tests := []struct {
		name       string
		before     map[string]cond
		versions   []string // spec.versions
		rep        clusterStackReport
		want       map[string]cond
		wantUsable string
		wantLatest string
		wantPhases []string
		wantResult ctrl.Result
		wantErr    error
	}{{
		name:       "every release ready",
		before:     failing(synced, csv1alpha1.ProgressingReason, "Creating releases: "+v1, false),
		rep:        clusterStackReport{desired: []name.Release{rel("v1"), rel("v2")}, releases: releases(csrReady(v1), csrReady(v2)), check: sourceCheck{known: true}, nextCheck: nextCheck},
		want:       converged,
		wantUsable: "v1, v2", wantLatest: v2, wantPhases: []string{phaseReady, phaseReady},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:       "a release progresses",
		rep:        clusterStackReport{desired: []name.Release{rel("v1"), rel("v2")}, releases: releases(csrReady(v1), csrProgressing(v2)), nextCheck: nextCheck},
		want:       fromMaps(map[string]cond{synced: ready}, failing(csv1alpha1.ReadyCondition, ReleasesNotReadyReason, "Waiting for releases: "+v2+" (Waiting for ORC Images)", false)),
		wantUsable: "v1", wantLatest: v1, wantPhases: []string{phaseReady, phaseProgressing},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name: "a release is stalled",
		rep:  clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(csrStalled(v1)), nextCheck: nextCheck},
		want: map[string]cond{
			synced:                      ready,
			csv1alpha1.ReadyCondition:   condFalse(ReleasesNotReadyReason, "Waiting for releases: "+v1+" (Nothing applied)"),
			csv1alpha1.StalledCondition: condActive(ReleasesNotReadyReason, "Releases need attention: "+v1+" (Nothing applied)"),
		},
		wantPhases: []string{phaseFailed},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:       "a release is not created yet",
		rep:        clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(), nextCheck: nextCheck},
		want:       failing(synced, csv1alpha1.ProgressingReason, "Creating releases: "+v1, false),
		wantPhases: []string{phasePending},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:       "a release is collected",
		rep:        clusterStackReport{desired: []name.Release{rel("v2")}, releases: releases(csrReady(v1), csrReady(v2)), deleting: []string{v1}, nextCheck: nextCheck},
		want:       failing(synced, csv1alpha1.ProgressingReason, "Deleting releases no longer desired: "+v1, false),
		wantUsable: "v2", wantLatest: v2, wantPhases: []string{phaseDeleting, phaseReady},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name: "no release at all",
		rep:  clusterStackReport{check: sourceCheck{known: true}, nextCheck: nextCheck},
		want: fromMaps(map[string]cond{synced: ready}, failing(csv1alpha1.ReadyCondition, NoReleasesReason,
			"No release of openstack-scs-1-32 in channel stable: list versions in spec.versions or publish a release", false)),
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:       "source outage",
		rep:        clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(csrReady(v1)), check: sourceCheck{err: sourceFailure(registryDown)}, nextCheck: nextCheck},
		want:       failing(synced, csv1alpha1.ReleaseSourceErrorReason, "Checking the release source: "+registryDown.Error(), false),
		wantUsable: "v1", wantLatest: v1, wantPhases: []string{phaseReady},
		wantErr: registryDown,
	}, {
		name:       "source refuses the credentials",
		rep:        clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(csrReady(v1)), check: sourceCheck{err: sourceFailure(unauthorized)}, nextCheck: nextCheck},
		want:       failing(synced, csv1alpha1.ReleaseSourceErrorReason, "Checking the release source: "+unauthorized.Error(), true),
		wantUsable: "v1", wantLatest: v1, wantPhases: []string{phaseReady},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:       "versions that do not parse",
		rep:        clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(csrReady(v1)), badVersions: []string{"1.0", "latest"}, nextCheck: nextCheck},
		want:       failing(synced, InvalidSpecReason, "spec.versions: cannot parse 1.0, latest", true),
		wantUsable: "v1", wantLatest: v1, wantPhases: []string{phaseReady},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:       "a stall ends Reconciling",
		before:     failing(synced, ReleaseSyncErrorReason, syncFailed.Error(), false),
		rep:        clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(csrReady(v1)), badVersions: []string{"latest"}, nextCheck: nextCheck},
		want:       failing(synced, InvalidSpecReason, "spec.versions: cannot parse latest", true),
		wantUsable: "v1", wantLatest: v1, wantPhases: []string{phaseReady},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:       "progress ends Stalled",
		before:     failing(synced, InvalidSpecReason, "spec.versions: cannot parse latest", true),
		rep:        clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(), nextCheck: nextCheck},
		want:       failing(synced, csv1alpha1.ProgressingReason, "Creating releases: "+v1, false),
		wantPhases: []string{phasePending},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:       "provider template missing",
		rep:        clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(csrReady(v1)), templateErr: templateErr, nextCheck: nextCheck},
		want:       failing(synced, ProviderTemplateErrorReason, templateErr.Error(), true),
		wantUsable: "v1", wantLatest: v1, wantPhases: []string{phaseReady},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:       "every failure at once, the first one's reason",
		rep:        clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(csrStalled(v1)), check: sourceCheck{err: sourceFailure(registryDown)}, templateErr: templateErr, syncErrs: []error{syncFailed}, nextCheck: nextCheck},
		want:       failing(synced, csv1alpha1.ReleaseSourceErrorReason, "Checking the release source: "+registryDown.Error()+"; "+templateErr.Error()+"; "+syncFailed.Error(), true),
		wantPhases: []string{phaseFailed},
		wantErr:    syncFailed,
	}, {
		name:       "writing a release fails",
		rep:        clusterStackReport{desired: []name.Release{rel("v1"), rel("v2")}, releases: releases(csrReady(v1)), syncErrs: []error{syncFailed}, nextCheck: nextCheck},
		want:       failing(synced, ReleaseSyncErrorReason, syncFailed.Error(), false),
		wantUsable: "v1", wantLatest: v1, wantPhases: []string{phaseReady, phasePending},
		wantErr: syncFailed,
	}, {
		name:       "only conflicts: ReleasesSynced stays",
		before:     converged,
		rep:        clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(csrReady(v1)), syncErrs: []error{conflict}, nextCheck: nextCheck},
		want:       converged,
		wantUsable: "v1", wantLatest: v1, wantPhases: []string{phaseReady},
		wantErr: conflict,
	}, {
		name:       "spec.kubernetesVersion unusable",
		rep:        clusterStackReport{err: outcome.Stall(InvalidSpecReason, "spec.kubernetesVersion: invalid")},
		want:       failing(synced, InvalidSpecReason, "spec.kubernetesVersion: invalid", true),
		wantResult: ctrl.Result{},
	}, {
		name:    "reading Clusters fails: nothing changes",
		before:  converged,
		rep:     clusterStackReport{err: readFailed},
		want:    converged,
		wantErr: readFailed,
	}, {
		name:   "deletion waits for releases",
		before: fromMaps(converged, map[string]cond{csv1alpha1.StalledCondition: condActive("Old", "old")}),
		rep:    clusterStackReport{deletion: true, err: outcome.Wait(csv1alpha1.DeletingReason, deletionWaitInterval, "Waiting for releases to be deleted: "+v1)},
		want: map[string]cond{
			synced:                          ready,
			csv1alpha1.ReadyCondition:       condFalse(csv1alpha1.DeletingReason, "Waiting for releases to be deleted: "+v1),
			csv1alpha1.ReconcilingCondition: condActive(csv1alpha1.DeletingReason, "Waiting for releases to be deleted: "+v1),
		},
		wantResult: ctrl.Result{RequeueAfter: deletionWaitInterval},
	}, {
		name:   "deletion waits for Clusters",
		before: converged,
		rep:    clusterStackReport{deletion: true, err: outcome.Wait(csv1alpha1.InUseReason, deletionWaitInterval, "Releases in use, delete these Clusters first: "+v1+" (Clusters a)")},
		want: map[string]cond{
			synced:                          ready,
			csv1alpha1.ReadyCondition:       condFalse(csv1alpha1.InUseReason, "Releases in use, delete these Clusters first: "+v1+" (Clusters a)"),
			csv1alpha1.ReconcilingCondition: condActive(csv1alpha1.InUseReason, "Releases in use, delete these Clusters first: "+v1+" (Clusters a)"),
		},
		wantResult: ctrl.Result{RequeueAfter: deletionWaitInterval},
	}, {
		name:    "deletion fails: nothing changes",
		before:  converged,
		rep:     clusterStackReport{deletion: true, err: readFailed},
		want:    converged,
		wantErr: readFailed,
	}, {
		name:     "a requested version the listing lacks stalls, naming the nearest of its channel",
		versions: []string{"v4"},
		rep: clusterStackReport{desired: []name.Release{rel("v4")}, releases: releases(csrProgressing("openstack-scs-1-32-v4")), nextCheck: nextCheck,
			check: sourceCheck{known: true, listed: []name.Release{rel("v1"), rel("v2"), rel("v3"), rel("v5"), rel("v6"), rel("v7"), rel("v5-beta-1")}}},
		want:       failing(synced, VersionNotFoundReason, "spec.versions: version v4 is not in the release source (nearest: v2, v3, v5, v6)", true),
		wantPhases: []string{phaseProgressing},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:     "a requested version below every listed one names the lowest",
		versions: []string{"v1"},
		rep: clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(), nextCheck: nextCheck,
			check: sourceCheck{known: true, listed: []name.Release{rel("v2"), rel("v3"), rel("v4")}}},
		want:       failing(synced, VersionNotFoundReason, "spec.versions: version v1 is not in the release source (nearest: v2, v3)", true),
		wantPhases: []string{phasePending},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:     "a requested version whose channel the source lacks says so",
		versions: []string{"v1-beta.2"},
		rep: clusterStackReport{desired: []name.Release{rel("v1-beta-2")}, releases: releases(), nextCheck: nextCheck,
			check: sourceCheck{known: true, listed: []name.Release{rel("v1")}}},
		want:       failing(synced, VersionNotFoundReason, "spec.versions: version v1-beta.2 is not in the release source (it has no beta version of this stack)", true),
		wantPhases: []string{phasePending},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:     "a requested version is missing while the source is down: retried, not stalled",
		versions: []string{"v4"},
		rep: clusterStackReport{desired: []name.Release{rel("v4")}, releases: releases(), nextCheck: nextCheck,
			check: sourceCheck{known: true, listed: []name.Release{rel("v3")}, err: outcome.Retry(csv1alpha1.ReleaseSourceErrorReason, registryDown)}},
		want:       failing(synced, csv1alpha1.ReleaseSourceErrorReason, "Checking the release source: "+registryDown.Error(), false),
		wantPhases: []string{phasePending},
		wantErr:    registryDown,
	}, {
		name:     "a requested version that is listed is created",
		versions: []string{"v4"},
		rep: clusterStackReport{desired: []name.Release{rel("v4")}, releases: releases(), nextCheck: nextCheck,
			check: sourceCheck{known: true, listed: []name.Release{rel("v3"), rel("v4")}}},
		want:       failing(synced, csv1alpha1.ProgressingReason, "Creating releases: openstack-scs-1-32-v4", false),
		wantPhases: []string{phasePending},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:     "a requested version gone from the source but ready from the cache is not missing",
		versions: []string{"v1"},
		rep: clusterStackReport{desired: []name.Release{rel("v1")}, releases: releases(csrReady(v1)), nextCheck: nextCheck,
			check: sourceCheck{known: true, listed: []name.Release{rel("v2")}}},
		want:       converged,
		wantUsable: "v1", wantLatest: v1, wantPhases: []string{phaseReady},
		wantResult: ctrl.Result{RequeueAfter: nextCheck},
	}, {
		name:       "deletion done",
		before:     converged,
		rep:        clusterStackReport{deletion: true},
		want:       converged,
		wantResult: ctrl.Result{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs := &csv1alpha1.ClusterStack{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "scs"},
				Spec:       csv1alpha1.ClusterStackSpec{Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Versions: tt.versions},
			}
			withConditions(cs, tt.before)
			res, err := setClusterStackStatus(cs, tt.rep)
			for _, d := range diffConditions(cs, tt.want) {
				t.Error(d)
			}
			if cs.Status.UsableVersions != tt.wantUsable || cs.Status.LatestRelease != tt.wantLatest {
				t.Errorf("usableVersions, latestRelease = %q, %q, want %q, %q", cs.Status.UsableVersions, cs.Status.LatestRelease, tt.wantUsable, tt.wantLatest)
			}
			var phases []string
			for _, s := range cs.Status.Summary {
				phases = append(phases, s.Phase)
			}
			if fmt.Sprint(phases) != fmt.Sprint(tt.wantPhases) {
				t.Errorf("summary phases = %v, want %v", phases, tt.wantPhases)
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
