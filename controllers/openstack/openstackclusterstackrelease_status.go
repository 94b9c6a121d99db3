package openstack

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/capability"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
)

// releaseRetryInterval is when a release that is not there yet (not published, no ClusterStack
// provides it) or whose source cannot be read looks again: neither is watched.
const releaseRetryInterval = time.Minute

// releaseReport is what one reconcile of an OpenStackClusterStackRelease found out. Steps only
// fill it in; setOpenStackClusterStackReleaseStatus turns it into conditions and the result.
type releaseReport struct {
	// release is why the release could not be had; resolver.Classify says what that means.
	release error
	// err stopped a step for a reason no condition reports (an API call failed): backoff.
	err error
	// images are the release's node image objects; none when the release has no node images.
	images []*infrav1.OpenStackNodeImageRelease
	// deleting says the report is about the deletion of the object.
	deleting bool
	// capability is the capability check of the release's cloud; nil when there was none (the
	// release could not be had, or a step failed before), which leaves CloudCapable as it is.
	capability *capabilityResult
}

// setOpenStackClusterStackReleaseStatus sets the conditions of obj (and status.ready) from rep
// and returns the reconcile result.
func setOpenStackClusterStackReleaseStatus(obj *infrav1.OpenStackClusterStackRelease, rep releaseReport) (ctrl.Result, error) {
	defer func() { obj.Status.Ready = conditions.IsTrue(obj, csv1alpha1.ReadyCondition) }()
	if rep.deleting {
		// A release being deleted only lets go of its node images; that needs no condition.
		return ctrl.Result{}, rep.err
	}
	var err error
	switch {
	case rep.release != nil:
		err = releaseFailure(obj.Name, rep.release)
	case rep.err != nil:
		err = rep.err
	default:
		err = nodeImagesOutcome(rep.images)
	}
	readyMsg := "The release has no node images"
	if len(rep.images) > 0 {
		readyMsg = fmt.Sprintf("All %d node images are active in Glance", len(rep.images))
	}
	kstatus.Summarise(obj, err, csv1alpha1.ReadyReason, readyMsg)
	res := ctrl.Result{}
	if c := rep.capability; c != nil {
		setCloudCapable(obj, c)
		res.RequeueAfter = c.recheckAfter
	}
	return outcome.Result(res, err)
}

// setCloudCapable sets CloudCapable from a capability check. A missing capability does not hold
// Ready back: the release is usable by Clusters that override the defaults (another flavor, no
// load balancer), and a platform engineer may fix the cloud while Clusters wait; the condition
// and a Warning event say what is missing. A check the cloud could not answer is Unknown, never
// False: an outage says nothing about what the cloud offers.
func setCloudCapable(obj *infrav1.OpenStackClusterStackRelease, c *capabilityResult) {
	cond := metav1.Condition{Type: infrav1.CloudCapableCondition, Status: metav1.ConditionUnknown}
	switch credErr := (*scope.CredentialsError)(nil); {
	case c.err == nil && capability.Capable(c.findings):
		cond.Status, cond.Reason = metav1.ConditionTrue, infrav1.CapabilitiesPresentReason
		cond.Message = "The cloud has what the class defaults need: " + capability.Summary(c.needs)
		if notes := advisories(c.findings); len(notes) > 0 {
			cond.Message += "; note: " + joinSemi(notes)
		}
	case c.err == nil:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, infrav1.CapabilityMissingReason, missingMessage(c.findings)
	case errors.As(c.err, new(*renderError)):
		// Not the cloud's doing; a rendering process that could not run is tried again soon.
		cond.Reason, cond.Message = infrav1.CapabilityCheckFailedReason, "Cannot check the cloud: "+c.err.Error()
		if retryable(c.err) {
			cond.Message += fmt.Sprintf(": retrying at %s", c.retryAt.UTC().Format("15:04:05 UTC"))
		}
	case retryable(c.err):
		problem := clients.Classify(c.err).Problem
		if errors.As(c.err, &credErr) || problem == "" {
			problem = c.err.Error()
		}
		cond.Reason = infrav1.CloudUnavailableReason
		cond.Message = fmt.Sprintf("Cannot check the cloud: %s: retrying at %s", problem, c.retryAt.UTC().Format("15:04:05 UTC"))
	case errors.As(c.err, &credErr):
		cond.Reason, cond.Message = infrav1.InvalidCredentialsReason, "Cannot check the cloud: "+credErr.Error()
	case clients.Classify(c.err).Kind == clients.KindAuth:
		cond.Reason = infrav1.InvalidCredentialsReason
		cond.Message = fmt.Sprintf("Cannot check the cloud: %s; check the credentials Secret", clients.Classify(c.err).Problem)
	default:
		cond.Reason = infrav1.CapabilityCheckFailedReason
		cond.Message = "Cannot check the cloud: " + c.err.Error()
		if class := clients.Classify(c.err); class.StatusCode == http.StatusForbidden {
			cond.Message += " (the credentials need read access to compute, network, block storage and image)"
		}
	}
	cond.Message = kstatus.BoundMessage(cond.Message)
	conditions.Set(obj, cond)
}

// credentialsProblem says err is a problem with the credentials that a user must fix.
func credentialsProblem(err error) bool {
	credErr := (*scope.CredentialsError)(nil)
	return errors.As(err, &credErr) && !credErr.Retryable()
}

func advisories(findings []capability.Finding) []string {
	var out []string
	for _, f := range findings {
		if f.Advisory {
			out = append(out, f.Message)
		}
	}
	return out
}

func joinSemi(s []string) string { return strings.Join(s, "; ") }

// releaseFailure maps the class of an error getting the release to this kind's outcome: a
// published release that cannot be used stalls for good, one not there yet is looked at again
// after releaseRetryInterval, a source that cannot be read stalls but is looked at again (Secrets
// and ClusterStacks of other controllers are not watched here), anything else is retried with
// backoff.
func releaseFailure(releaseName string, err error) error {
	switch resolver.Classify(err) {
	case resolver.FailureInvalid:
		// The file to fix decides the reason: node-images.yaml is this kind's part of a release.
		if invalid := (*release.InvalidError)(nil); errors.As(err, &invalid) && invalid.File == release.NodeImagesFile {
			return outcome.Stall(infrav1.InvalidNodeImagesReason, "node-images.yaml of release %s cannot be used: %v", releaseName, err)
		}
		return outcome.Stall(infrav1.ReleaseUnavailableReason, "Release %s cannot be used: %v", releaseName, err)
	case resolver.FailureNotYet:
		return outcome.Wait(infrav1.ReleaseUnavailableReason, releaseRetryInterval, "Waiting for release %s: %v", releaseName, err)
	case resolver.FailureSource:
		return outcome.StallRetry(infrav1.ReleaseUnavailableReason, releaseRetryInterval, "The source of release %s cannot be read: %v", releaseName, err)
	}
	return outcome.Retry(infrav1.ReleaseUnavailableReason, fmt.Errorf("getting release %s: %w", releaseName, err))
}

// nodeImagesOutcome summarises the conditions of the release's node images: failed ones stall
// it; an unavailable cloud is named with its retry time (the image's message), so the release
// says why it waits and until when; otherwise it waits for the images still in progress (their
// changes are watched).
func nodeImagesOutcome(nirs []*infrav1.OpenStackNodeImageRelease) error {
	var notReady, stalled, outage []string
	for _, nir := range nirs {
		switch {
		case conditions.IsTrue(nir, csv1alpha1.StalledCondition):
			stalled = append(stalled, fmt.Sprintf("%s: %s", nir.Name, conditions.GetMessage(nir, csv1alpha1.StalledCondition)))
		case !nir.Status.Ready:
			notReady = append(notReady, nir.Name)
			if conditions.GetReason(nir, csv1alpha1.ReconcilingCondition) == infrav1.CloudUnavailableReason {
				outage = append(outage, fmt.Sprintf("%s: %s", nir.Name, conditions.GetMessage(nir, csv1alpha1.ReconcilingCondition)))
			}
		}
	}
	switch {
	case len(stalled) > 0:
		return outcome.Stall(infrav1.WaitingForImagesReason, "Node images failed: %s", strings.Join(stalled, "; "))
	case len(outage) > 0:
		return outcome.Wait(infrav1.CloudUnavailableReason, 0, "Waiting for node images: %s; %s", strings.Join(notReady, ", "), strings.Join(outage, "; "))
	case len(notReady) > 0:
		return outcome.Wait(infrav1.WaitingForImagesReason, 0, "Waiting for node images: %s", strings.Join(notReady, ", "))
	}
	return nil
}
