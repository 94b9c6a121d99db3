package clusterstack

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
)

// More reasons of the ClusterStack's conditions.
const (
	// InvalidSpecReason means a field of the spec cannot be used.
	InvalidSpecReason = "InvalidSpec"
	// ReleaseSyncErrorReason means creating, updating or deleting a release failed.
	ReleaseSyncErrorReason = "ReleaseSyncError"
	// NoReleasesReason means the ClusterStack asks for no release and the source has none.
	NoReleasesReason = "NoReleases"
)

// Phases of a release in the ClusterStack's summary.
const (
	phaseReady       = "Ready"
	phasePending     = "Pending"
	phaseProgressing = "Progressing"
	phaseFailed      = "Failed"
	phaseDeleting    = "Deleting"
)

// statusInput is everything the ClusterStack's status is computed from.
type statusInput struct {
	desired     []name.Release
	releases    map[string]*clusterstackv1alpha1.ClusterStackRelease
	check       sourceCheck
	badVersions []string
	templateErr error
	syncErrs    []error
	deleting    []string
}

// setClusterStackStatus computes summary, usableVersions, latestRelease and the conditions. It
// is a pure function of its input, and every message is sorted and free of timestamps, so that a
// converged ClusterStack patches nothing. All failures of one reconcile are reported together: a
// step that succeeds never hides another step's failure.
func setClusterStackStatus(cs *clusterstackv1alpha1.ClusterStack, in statusInput) {
	summaries, usable, latest, notReady, stalledReleases := summarise(in)
	cs.Status.Summary = summaries
	cs.Status.UsableVersions = strings.Join(usable, ", ")
	cs.Status.LatestRelease = latest

	var (
		failures []string
		reason   string
		stalled  bool
	)
	fail := func(r, msg string, terminal bool) {
		if reason == "" {
			reason = r
		}
		failures = append(failures, msg)
		stalled = stalled || terminal
	}
	if in.check.err != nil {
		fail(clusterstackv1alpha1.ReleaseSourceErrorReason, "Checking the release source: "+in.check.err.Error(), terminalSourceError(in.check.err))
	}
	if len(in.badVersions) > 0 {
		fail(InvalidSpecReason, "spec.versions: cannot parse "+strings.Join(in.badVersions, ", "), true)
	}
	if in.templateErr != nil {
		fail(ProviderTemplateErrorReason, in.templateErr.Error(), true)
	}
	var syncMsgs []string
	for _, err := range in.syncErrs {
		// A conflict only means the cache was behind; the retry fixes it without anyone's help.
		if !isConflict(err) {
			syncMsgs = append(syncMsgs, err.Error())
		}
	}
	sort.Strings(syncMsgs)
	if len(syncMsgs) > 0 {
		fail(ReleaseSyncErrorReason, strings.Join(syncMsgs, "; "), false)
	}

	var missing []string
	for _, n := range in.desired {
		if in.releases[n.String()] == nil {
			missing = append(missing, n.String())
		}
	}
	synced := metav1.Condition{Type: clusterstackv1alpha1.ReleasesSyncedCondition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.ReadyReason}
	switch {
	case len(failures) > 0:
		synced.Status, synced.Reason, synced.Message = metav1.ConditionFalse, reason, strings.Join(failures, "; ")
	case len(missing) > 0:
		synced.Status, synced.Reason, synced.Message = metav1.ConditionFalse, clusterstackv1alpha1.ProgressingReason, "Creating releases: "+strings.Join(missing, ", ")
	case len(in.deleting) > 0:
		synced.Status, synced.Reason, synced.Message = metav1.ConditionFalse, clusterstackv1alpha1.ProgressingReason, "Deleting releases no longer desired: "+strings.Join(in.deleting, ", ")
	}
	if len(failures) == 0 && len(syncMsgs) == 0 && len(in.syncErrs) > 0 {
		// Only conflicts: keep whatever the condition said before.
		if prev := conditions.Get(cs, clusterstackv1alpha1.ReleasesSyncedCondition); prev != nil {
			synced = *prev
		}
	}
	conditions.Set(cs, synced)

	ready := metav1.Condition{Type: clusterstackv1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.ReadyReason}
	switch {
	case synced.Status != metav1.ConditionTrue:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, synced.Reason, synced.Message
	case len(notReady) > 0:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReleasesNotReadyReason, "Waiting for releases: "+strings.Join(notReady, "; ")
	case len(in.desired) == 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, NoReleasesReason
		ready.Message = fmt.Sprintf("No release of %s-%s-%s in channel %s: list versions in spec.versions or publish a release", cs.Spec.Provider, cs.Spec.Name, strings.ReplaceAll(cs.Spec.KubernetesVersion, ".", "-"), resolver.ChannelOf(cs))
	}
	conditions.Set(cs, ready)

	stalled = stalled || len(stalledReleases) > 0
	switch {
	case ready.Status == metav1.ConditionTrue:
		conditions.Delete(cs, clusterstackv1alpha1.StalledCondition)
		conditions.Delete(cs, clusterstackv1alpha1.ReconcilingCondition)
	case stalled:
		msg := ready.Message
		if len(stalledReleases) > 0 && len(failures) == 0 {
			msg = "Releases need attention: " + strings.Join(stalledReleases, "; ")
		}
		conditions.Set(cs, metav1.Condition{Type: clusterstackv1alpha1.StalledCondition, Status: metav1.ConditionTrue, Reason: ready.Reason, Message: msg})
		conditions.Delete(cs, clusterstackv1alpha1.ReconcilingCondition)
	default:
		conditions.Set(cs, metav1.Condition{Type: clusterstackv1alpha1.ReconcilingCondition, Status: metav1.ConditionTrue, Reason: ready.Reason, Message: ready.Message})
		conditions.Delete(cs, clusterstackv1alpha1.StalledCondition)
	}
}

// summarise returns the summary entries (desired releases and those being deleted, ascending),
// the ready versions (dotted, ascending), the newest ready release, and descriptions of the
// desired releases that are not ready and of those that are stalled.
func summarise(in statusInput) ([]clusterstackv1alpha1.ClusterStackReleaseSummary, []string, string, []string, []string) {
	names := append([]name.Release(nil), in.desired...)
	for _, d := range in.deleting {
		if n, err := name.Parse(d); err == nil {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool { return names[i].Compare(names[j]) < 0 })

	desired := map[string]bool{}
	for _, n := range in.desired {
		desired[n.String()] = true
	}
	var (
		summaries        []clusterstackv1alpha1.ClusterStackReleaseSummary
		usable, notReady []string
		stalled          []string
		latest           string
	)
	for _, n := range names {
		csr := in.releases[n.String()]
		s := clusterstackv1alpha1.ClusterStackReleaseSummary{Name: n.String()}
		switch {
		case csr == nil:
			s.Phase, s.Message = phasePending, "Not created yet"
		case !csr.DeletionTimestamp.IsZero() || !desired[n.String()]:
			s.Phase, s.Message = phaseDeleting, conditions.GetMessage(csr, clusterstackv1alpha1.ReadyCondition)
		case csr.Status.Ready && conditions.IsTrue(csr, clusterstackv1alpha1.ReadyCondition):
			s.Ready, s.Phase = true, phaseReady
		case conditions.IsTrue(csr, clusterstackv1alpha1.StalledCondition):
			s.Phase, s.Message = phaseFailed, conditions.GetMessage(csr, clusterstackv1alpha1.StalledCondition)
		default:
			s.Phase, s.Message = phaseProgressing, conditions.GetMessage(csr, clusterstackv1alpha1.ReadyCondition)
		}
		summaries = append(summaries, s)
		if !desired[n.String()] {
			continue
		}
		if s.Ready {
			usable = append(usable, n.Version.String())
			latest = n.String()
			continue
		}
		desc := n.String()
		if s.Message != "" {
			desc += " (" + s.Message + ")"
		}
		notReady = append(notReady, desc)
		if s.Phase == phaseFailed {
			stalled = append(stalled, desc)
		}
	}
	return summaries, usable, latest, notReady, stalled
}

func isConflict(err error) bool {
	for err != nil {
		if apierrors.IsConflict(err) {
			return true
		}
		err = errors.Unwrap(err)
	}
	return false
}
