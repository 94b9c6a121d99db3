package clustercredential

import (
	"errors"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
)

// Named waits of the status computation.
const (
	// credentialsRetryInterval: Secrets are not watched, so a fixed Secret is noticed this late.
	credentialsRetryInterval = 2 * time.Minute
	// refusedRetryInterval: a role assignment or policy is fixed outside the API; look again.
	refusedRetryInterval = 10 * time.Minute
	// defaultOutageRetry is the wait during an outage when the cloud gives no Retry-After.
	defaultOutageRetry = 30 * time.Second
	// maxOutageRetry caps a Retry-After.
	maxOutageRetry = 10 * time.Minute
)

// report is what one reconcile of an OpenStackClusterCredential found out; the steps only fill
// it in, setOpenStackClusterCredentialStatus turns it into conditions and the requeue.
type report struct {
	// err stopped the steps: an outcome (Wait, Stall), a *scope.CredentialsError, a cloud error
	// (classified by clients.Classify) or a *kubeError.
	err error
	// deleting says the report is about the deletion.
	deleting bool
	// current is the credential the workload holds when err is nil.
	current *infrav1.ApplicationCredentialRef
	// rotateIn and revokeIn are how long until the next rotation and the revocation of the
	// replaced credential (zero: none pending).
	rotateIn, revokeIn time.Duration
	// retry is the wait for a workload cluster that does not answer (and an outage without
	// Retry-After).
	retry time.Duration
}

// settled says whether the conditions describe the current spec (observedGeneration).
func settled(rep report) bool {
	if rep.err == nil {
		return true
	}
	var kube *kubeError
	if errors.As(rep.err, &kube) {
		return false
	}
	return outcome.Settled(rep.err) || isCloudOrCredentials(rep.err)
}

func isCloudOrCredentials(err error) bool {
	var ce *scope.CredentialsError
	return errors.As(err, &ce) || clients.Classify(err).StatusCode != 0 || clients.Classify(err).Kind == clients.KindRetryable
}

// setOpenStackClusterCredentialStatus sets the conditions of obj from rep, the one place where
// the steps' errors are classified, and returns the reconcile result.
func setOpenStackClusterCredentialStatus(obj *infrav1.OpenStackClusterCredential, rep report) (ctrl.Result, error) {
	if rep.err == nil {
		if rep.deleting {
			kstatus.MarkProgressing(obj, infrav1.RevokingReason, "Revoked the application credentials")
			return ctrl.Result{}, nil
		}
		msg := fmt.Sprintf("The workload cluster holds application credential %s (roles %v), valid until %s",
			rep.current.Name, rep.current.Roles, rep.current.ExpiresAt.UTC().Format(time.RFC3339))
		kstatus.MarkReady(obj, infrav1.CredentialValidReason, msg)
		next := rep.rotateIn
		if rep.revokeIn > 0 && (next <= 0 || rep.revokeIn < next) {
			next = rep.revokeIn
		}
		if next <= 0 {
			next = time.Second
		}
		return ctrl.Result{RequeueAfter: next}, nil
	}

	var kube *kubeError
	if errors.As(rep.err, &kube) {
		return ctrl.Result{}, rep.err
	}
	if outcome.Settled(rep.err) {
		kstatus.Summarise(obj, rep.err, infrav1.CredentialValidReason, "")
		return outcome.Result(ctrl.Result{}, rep.err)
	}
	var credErr *scope.CredentialsError
	if errors.As(rep.err, &credErr) && !credErr.Retryable() {
		kstatus.MarkStalled(obj, infrav1.InvalidCredentialsReason, credErr.Error())
		return ctrl.Result{RequeueAfter: credentialsRetryInterval}, nil
	}
	class := clients.Classify(rep.err)
	problem := class.Problem
	if credErr != nil {
		problem = credErr.Error()
	}
	switch {
	case credErr != nil || class.Kind == clients.KindRetryable:
		wait := class.RetryAfter
		if wait <= 0 {
			wait = defaultOutageRetry
		}
		wait = min(wait, maxOutageRetry)
		kstatus.MarkProgressing(obj, infrav1.CloudUnavailableReason, fmt.Sprintf("%s: retrying in %s", problem, wait))
		return ctrl.Result{RequeueAfter: wait}, nil
	case class.Kind == clients.KindAuth:
		kstatus.MarkStalled(obj, infrav1.InvalidCredentialsReason,
			fmt.Sprintf("%s; check the credentials Secret %s/%s", problem, obj.Namespace, obj.Spec.IdentityRef.Name))
		return ctrl.Result{RequeueAfter: credentialsRetryInterval}, nil
	case class.Kind == clients.KindTerminal && class.StatusCode != 0:
		kstatus.MarkStalled(obj, infrav1.CredentialRefusedReason, fmt.Sprintf(
			"Keystone refused to manage the application credentials of Cluster %s (%s): the user of Secret %s/%s must have the roles %v on its project and may not log in with a restricted application credential; change the ClusterStack's spec.applicationCredentials.roles or the role assignments",
			obj.Spec.ClusterName, problem, obj.Namespace, obj.Spec.IdentityRef.Name, obj.Spec.Roles))
		return ctrl.Result{RequeueAfter: refusedRetryInterval}, nil
	}
	// Conflicts, not found and errors that are not the cloud's: backoff, no news for a user.
	return ctrl.Result{}, rep.err
}
