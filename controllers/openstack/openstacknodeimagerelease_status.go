package openstack

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
)

// Named waits of the status computation.
const (
	// credentialsRetryInterval: Secrets are not watched, so a fixed Secret is noticed this late.
	credentialsRetryInterval = 2 * time.Minute
	// quotaRetryInterval: quotas cannot be watched; a raised quota is noticed this late. Long,
	// because each try may transfer the image again until Glance refuses it.
	quotaRetryInterval = time.Hour
	// protectedRecheckInterval: a protected image needs a human; look again now and then.
	protectedRecheckInterval = 5 * time.Minute
	// defaultOutageRetry is the wait during an outage when the cloud gives no Retry-After.
	defaultOutageRetry = 30 * time.Second
	// maxOutageRetry caps a Retry-After, so that a cloud asking for a day is asked again sooner.
	maxOutageRetry = 10 * time.Minute
)

// report is what one reconcile of an OpenStackNodeImageRelease found out, with the settings its
// status depends on. Steps only fill it in; setOpenStackNodeImageReleaseStatus turns it into
// conditions and the result, so that the conditions and the time the object says it retries at
// come from one place.
type report struct {
	// outcome is the state of the image (or of its deletion) when no error stopped the step.
	outcome nodeimage.Outcome
	// err stopped the step: *nodeimage.TerminalError, *scope.CredentialsError, a cloud error
	// (classified by clients.Classify) or a kubeError.
	err error
	// deleting says the report is about the deletion of the object.
	deleting bool
	// unchanged says the step decided that nothing is to be done: conditions stay as they are.
	unchanged bool
	// converged says, for unchanged reports, that the conditions describe the current spec.
	converged bool
	// now is when the step ended; an outage message names the retry time counted from it.
	now time.Time
	// recheck is how often a ready image is read again from Glance (zero: never).
	recheck time.Duration
	// outageRetry is the wait during an outage without Retry-After (zero: defaultOutageRetry).
	outageRetry time.Duration

	// observed is the status function's verdict, for reconciler.Kind.Observed.
	observed bool
}

// kubeError is a failure talking to the Kubernetes API (status writes, listings). It is not the
// cloud's, so it gets no condition: it is retried with backoff.
type kubeError struct{ err error }

func (e *kubeError) Error() string { return e.err.Error() }
func (e *kubeError) Unwrap() error { return e.err }

// setOpenStackNodeImageReleaseStatus sets the conditions of obj (and status.ready) from rep, the
// one place where cloud errors are classified. It returns the reconcile result, whether the
// conditions describe the current spec for good (converged: observedGeneration is recorded; an
// image still on its way is not), and the error for controller-runtime's backoff.
func setOpenStackNodeImageReleaseStatus(obj *infrav1.OpenStackNodeImageRelease, rep report) (_ ctrl.Result, converged bool, _ error) {
	defer func() { obj.Status.Ready = conditions.IsTrue(obj, csv1alpha1.ReadyCondition) }()
	if rep.unchanged {
		return ctrl.Result{}, rep.converged, nil
	}
	if rep.err == nil {
		out := rep.outcome
		if out.Ready {
			kstatus.MarkReady(obj, infrav1.ImageActiveReason, out.Message)
			return ctrl.Result{RequeueAfter: rep.recheck}, true, nil
		}
		kstatus.MarkProgressing(obj, out.Reason, out.Message)
		return ctrl.Result{RequeueAfter: out.RequeueAfter}, rep.deleting, nil
	}

	var kube *kubeError
	if errors.As(rep.err, &kube) {
		return ctrl.Result{}, false, rep.err
	}
	var terminal *nodeimage.TerminalError
	if errors.As(rep.err, &terminal) {
		kstatus.MarkStalled(obj, terminal.Reason, terminal.Message)
		return ctrl.Result{RequeueAfter: stalledRetry(terminal.Reason)}, true, nil
	}
	var credErr *scope.CredentialsError
	if errors.As(rep.err, &credErr) && !credErr.Retryable() {
		kstatus.MarkStalled(obj, infrav1.InvalidCredentialsReason, credErr.Error())
		return ctrl.Result{RequeueAfter: credentialsRetryInterval}, true, nil
	}

	class := clients.Classify(rep.err)
	if credErr != nil {
		// Keystone is unavailable; the credentials may well be fine.
		return outage(obj, rep, credErr.Error(), class.RetryAfter), rep.deleting, nil
	}
	switch class.Kind {
	case clients.KindRetryable:
		return outage(obj, rep, class.Problem, class.RetryAfter), rep.deleting, nil
	case clients.KindAuth:
		// The token was refused and logging in again failed: the credentials were revoked.
		kstatus.MarkStalled(obj, infrav1.InvalidCredentialsReason,
			fmt.Sprintf("%s; check the credentials Secret %s/%s", class.Problem, obj.Namespace, identityName(obj)))
		return ctrl.Result{RequeueAfter: credentialsRetryInterval}, true, nil
	case clients.KindQuota:
		kstatus.MarkStalled(obj, infrav1.QuotaExceededReason, class.Problem+"; raise the quota or change the image")
		return ctrl.Result{RequeueAfter: quotaRetryInterval}, true, nil
	case clients.KindConflict, clients.KindNotFound:
		// The image changes state under us; that resolves itself and is no news for a user.
		return ctrl.Result{}, false, rep.err
	case clients.KindTerminal:
		if rep.deleting && class.StatusCode == http.StatusForbidden {
			kstatus.MarkStalled(obj, infrav1.ProtectedReason, fmt.Sprintf(
				"Glance refused to delete image %s (HTTP 403): it is protected or the policy forbids it; unprotect it or set deletionPolicy keep", obj.Status.ImageID))
			return ctrl.Result{RequeueAfter: protectedRecheckInterval}, true, nil
		}
	}
	kstatus.MarkProgressing(obj, infrav1.CloudErrorReason, rep.err.Error())
	return ctrl.Result{}, false, rep.err
}

// outage marks obj Reconciling with what is unavailable and when the operator tries again, and
// returns the result that makes it so. The message carries the retry time, so each retry during
// an outage writes the status once; the controller ignores its own status writes, so that write
// does not bring the retry forward.
func outage(obj *infrav1.OpenStackNodeImageRelease, rep report, problem string, retryAfter time.Duration) ctrl.Result {
	wait := retryAfter
	if wait <= 0 {
		wait = rep.outageRetry
		if wait <= 0 {
			wait = defaultOutageRetry
		}
	}
	wait = min(wait, maxOutageRetry)
	at := rep.now.Add(wait)
	if rep.deleting {
		problem = fmt.Sprintf("Deleting image %s: %s", obj.Status.ImageID, problem)
	}
	kstatus.MarkProgressing(obj, infrav1.CloudUnavailableReason, fmt.Sprintf("%s: retrying at %s (in %s)", problem, at.UTC().Format("15:04:05 UTC"), wait))
	return ctrl.Result{RequeueAfter: wait}
}

// stalledRetry is how long a stalled object waits before it is tried again although its spec did
// not change: only for what can be fixed outside the spec and cannot be watched.
func stalledRetry(reason string) time.Duration {
	switch reason {
	case infrav1.QuotaExceededReason:
		return quotaRetryInterval
	case infrav1.ProtectedReason:
		return protectedRecheckInterval
	case infrav1.InvalidCredentialsReason:
		return credentialsRetryInterval
	}
	return 0
}

// retriedStall reports whether a Stalled object of an unchanged spec is tried again.
func retriedStall(reason string) bool { return stalledRetry(reason) > 0 }

func identityName(obj *infrav1.OpenStackNodeImageRelease) string {
	if obj.Spec.IdentityRef != nil && obj.Spec.IdentityRef.Name != "" {
		return obj.Spec.IdentityRef.Name
	}
	return scope.DefaultCloudName
}
