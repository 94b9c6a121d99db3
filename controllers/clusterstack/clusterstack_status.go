package clusterstack

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
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
	// VersionNotFoundReason means spec.versions asks for a version the release source does not
	// have.
	VersionNotFoundReason = "VersionNotFound"
)

// nearestVersions is how many existing versions on each side of a missing one its message names.
const nearestVersions = 2

// Phases of a release in the ClusterStack's summary.
const (
	phaseReady       = "Ready"
	phasePending     = "Pending"
	phaseProgressing = "Progressing"
	phaseFailed      = "Failed"
	phaseDeleting    = "Deleting"
)

// clusterStackReport is what one reconcile of a ClusterStack found.
type clusterStackReport struct {
	// err ended the reconcile before the releases were synced: a stall (a spec that cannot be
	// used) or a failure to read what the desired set is computed from, which leaves the
	// conditions as they were.
	err         error
	desired     []name.Release
	releases    map[string]*clusterstackv1alpha1.ClusterStackRelease
	check       sourceCheck
	badVersions []string
	templateErr error
	syncErrs    []error
	// deleting are the releases being collected.
	deleting []string
	// nextCheck is when the source is due to be listed again.
	nextCheck time.Duration
	// deletion marks the report of the delete steps; err is then their outcome: nil (done), a
	// wait for the releases to go, or a failure.
	deletion bool
}

// setClusterStackStatus computes summary, usableVersions, latestRelease and the conditions, and
// returns the reconcile's result. It is a pure function of its input, and every message is
// sorted and free of timestamps, so that a converged ClusterStack patches nothing. All failures
// of one reconcile are reported together: a step that succeeds never hides another step's
// failure.
func setClusterStackStatus(cs *clusterstackv1alpha1.ClusterStack, rep clusterStackReport) (ctrl.Result, error) {
	switch {
	case rep.deletion:
		setDeletionStatus(cs, rep.err)
		return outcome.Result(ctrl.Result{}, rep.err)
	case rep.err != nil:
		if s, ok := outcome.AsStalled(rep.err); ok {
			setStep(cs, clusterstackv1alpha1.ReleasesSyncedCondition, s)
			ready := metav1.Condition{Type: clusterstackv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: s.Reason, Message: s.Message}
			conditions.Set(cs, ready)
			setSummary(cs, ready, true, s.Message)
		}
		return outcome.Result(ctrl.Result{}, rep.err)
	}

	summaries, usable, latest, notReady, stalledReleases := summarise(rep)
	cs.Status.Summary = summaries
	cs.Status.UsableVersions = strings.Join(usable, ", ")
	cs.Status.LatestRelease = latest

	synced, failed, stalled := releasesSynced(cs, rep)
	conditions.Set(cs, synced)

	ready := stackReady(cs, rep, synced, notReady)
	conditions.Set(cs, ready)
	stalledMsg := ready.Message
	if len(stalledReleases) > 0 && !failed {
		stalledMsg = "Releases need attention: " + strings.Join(stalledReleases, "; ")
	}
	setSummary(cs, ready, stalled || len(stalledReleases) > 0, stalledMsg)

	if len(rep.syncErrs) > 0 {
		return ctrl.Result{}, kerrors.NewAggregate(rep.syncErrs)
	}
	if _, ok := outcome.AsTransient(rep.check.err); ok {
		// Backoff comes from the returned error; the condition already says what failed.
		return ctrl.Result{}, rep.check.err
	}
	return ctrl.Result{RequeueAfter: rep.nextCheck}, nil
}

// stackReady returns Ready: what ReleasesSynced says when it is not True, else whether every
// desired release is ready (and there is one).
func stackReady(cs *clusterstackv1alpha1.ClusterStack, rep clusterStackReport, synced metav1.Condition, notReady []string) metav1.Condition {
	ready := metav1.Condition{Type: clusterstackv1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.ReadyReason}
	switch {
	case synced.Status != metav1.ConditionTrue:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, synced.Reason, synced.Message
	case len(notReady) > 0:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReleasesNotReadyReason, "Waiting for releases: "+strings.Join(notReady, "; ")
	case len(rep.desired) == 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, NoReleasesReason
		ready.Message = fmt.Sprintf("No release of %s-%s-%s in channel %s: list versions in spec.versions or publish a release", cs.Spec.Provider, cs.Spec.Name, strings.ReplaceAll(cs.Spec.KubernetesVersion, ".", "-"), resolver.ChannelOf(cs))
	}
	return ready
}

// releasesSynced returns the ReleasesSynced condition, whether some step failed, and whether a
// failure needs a user.
func releasesSynced(cs *clusterstackv1alpha1.ClusterStack, rep clusterStackReport) (metav1.Condition, bool, bool) {
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
	if rep.check.err != nil {
		_, terminal := outcome.AsStalled(rep.check.err)
		fail(clusterstackv1alpha1.ReleaseSourceErrorReason, "Checking the release source: "+rep.check.err.Error(), terminal)
	}
	if len(rep.badVersions) > 0 {
		fail(InvalidSpecReason, "spec.versions: cannot parse "+strings.Join(rep.badVersions, ", "), true)
	}
	if msgs := unpublishedVersions(cs, rep); len(msgs) > 0 {
		fail(VersionNotFoundReason, "spec.versions: "+strings.Join(msgs, "; "), true)
	}
	if rep.templateErr != nil {
		fail(ProviderTemplateErrorReason, rep.templateErr.Error(), true)
	}
	var syncMsgs []string
	for _, err := range rep.syncErrs {
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
	for _, n := range rep.desired {
		if rep.releases[n.String()] == nil {
			missing = append(missing, n.String())
		}
	}
	synced := metav1.Condition{Type: clusterstackv1alpha1.ReleasesSyncedCondition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.ReadyReason}
	switch {
	case len(failures) > 0:
		synced.Status, synced.Reason, synced.Message = metav1.ConditionFalse, reason, strings.Join(failures, "; ")
	case len(missing) > 0:
		synced.Status, synced.Reason, synced.Message = metav1.ConditionFalse, clusterstackv1alpha1.ProgressingReason, "Creating releases: "+strings.Join(missing, ", ")
	case len(rep.deleting) > 0:
		synced.Status, synced.Reason, synced.Message = metav1.ConditionFalse, clusterstackv1alpha1.ProgressingReason, "Deleting releases no longer desired: "+strings.Join(rep.deleting, ", ")
	}
	if len(failures) == 0 && len(rep.syncErrs) > 0 {
		// Only conflicts: keep whatever the condition said before.
		if prev := conditions.Get(cs, clusterstackv1alpha1.ReleasesSyncedCondition); prev != nil {
			synced = *prev
		}
	}
	return synced, len(failures) > 0, stalled
}

// unpublishedVersions describes the spec.versions that the last listing of the source lacks,
// each with the nearest versions it has of the same channel. Only a listing that succeeded
// counts: a source that cannot be read now says nothing about what it holds (its failure is
// reported as such). A release that is ready already (from the cache) is not missing.
func unpublishedVersions(cs *clusterstackv1alpha1.ClusterStack, rep clusterStackReport) []string {
	if !rep.check.known || rep.check.err != nil {
		return nil
	}
	var msgs []string
	for _, n := range rep.desired {
		if !requested(cs, n) || slices.ContainsFunc(rep.check.listed, func(l name.Release) bool { return l.Compare(n) == 0 }) {
			continue
		}
		if csr := rep.releases[n.String()]; csr != nil && csr.Status.Ready {
			continue
		}
		msg := fmt.Sprintf("version %s is not in the release source", n.Version)
		if near := nearest(n, rep.check.listed); len(near) > 0 {
			msg += " (nearest: " + strings.Join(near, ", ") + ")"
		} else {
			msg += fmt.Sprintf(" (it has no %s version of this stack)", n.Version.Channel())
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// requested reports whether spec.versions names n.
func requested(cs *clusterstackv1alpha1.ClusterStack, n name.Release) bool {
	for _, v := range cs.Spec.Versions {
		if ver, err := name.ParseVersion(v); err == nil && ver.Compare(n.Version) == 0 {
			return true
		}
	}
	return false
}

// nearest returns the versions of listed in n's channel just below and just above n (up to
// nearestVersions each), ascending.
func nearest(n name.Release, listed []name.Release) []string {
	var same []name.Version
	for _, l := range listed {
		if l.Version.Channel() == n.Version.Channel() {
			same = append(same, l.Version)
		}
	}
	slices.SortFunc(same, name.Version.Compare)
	same = slices.CompactFunc(same, func(a, b name.Version) bool { return a.Compare(b) == 0 })
	at, _ := slices.BinarySearchFunc(same, n.Version, name.Version.Compare)
	lo, hi := max(at-nearestVersions, 0), min(at+nearestVersions, len(same))
	out := make([]string, 0, hi-lo)
	for _, v := range same[lo:hi] {
		out = append(out, v.String())
	}
	return out
}

// summarise returns the summary entries (desired releases and those being deleted, ascending),
// the ready versions (dotted, ascending), the newest ready release, and descriptions of the
// desired releases that are not ready and of those that are stalled.
func summarise(in clusterStackReport) ([]clusterstackv1alpha1.ClusterStackReleaseSummary, []string, string, []string, []string) {
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
