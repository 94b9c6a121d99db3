package openstack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cluster-api/util/conditions"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/capability"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
)

// DefaultCapabilityCheckInterval is how long a capability check's result is reused: quotas,
// flavors and the catalog change rarely, and a converged release should cost no cloud calls.
const DefaultCapabilityCheckInterval = time.Hour

// CloudReaders hands out the read-only cloud clients of the capability check for an
// identityRef; scope.Factory implements it.
type CloudReaders interface {
	CloudReader(ctx context.Context, namespace string, ref *infrav1.OpenStackIdentityReference) (clients.CloudReader, error)
}

// capabilityResult is what one capability check found, or why it could not look.
type capabilityResult struct {
	// needs is what the class needs; findings what the cloud lacks of it.
	needs    capability.Needs
	findings []capability.Finding
	// err stopped the check: a *scope.CredentialsError, a cloud error (clients.Classify), or the
	// class could not be rendered.
	err error
	// retryAt is when a check stopped by an outage is tried again.
	retryAt time.Time
	// recheckAfter is when the next check is due, from this reconcile on.
	recheckAfter time.Duration
}

// capabilityKey is what a check's result depends on besides the cloud: the spec (identityRef)
// and the release's content. Another key checks again at once.
type capabilityKey struct {
	uid        types.UID
	generation int64
	release    string
}

type capabilityEntry struct {
	key    capabilityKey
	result capabilityResult
	// due is when the result is checked again.
	due time.Time
}

// capabilityCache keeps the last check per release object, so that reconciles between checks
// (node images progressing, resyncs) make no cloud call.
type capabilityCache struct {
	mu      sync.Mutex
	entries map[types.NamespacedName]capabilityEntry
}

func (c *capabilityCache) get(k types.NamespacedName) (capabilityEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	return e, ok
}

func (c *capabilityCache) put(k types.NamespacedName, e capabilityEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[types.NamespacedName]capabilityEntry{}
	}
	c.entries[k] = e
}

func (c *capabilityCache) forget(k types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, k)
}

// checkCapability returns the capability of the release's cloud: the cached result while it is
// not due, else a new check. A check renders the cluster-class chart (to read the class's
// defaults) and asks the cloud with read-only calls (capability.Read).
func (r *OpenStackClusterStackReleaseReconciler) checkCapability(ctx context.Context, obj *infrav1.OpenStackClusterStackRelease, rel *release.Release, nirs []*infrav1.OpenStackNodeImageRelease) *capabilityResult {
	if r.Clouds == nil {
		return nil
	}
	objKey := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
	key := capabilityKey{uid: obj.UID, generation: obj.Generation, release: rel.Digest}
	if key.release == "" {
		key.release = rel.Dir
	}
	now := r.now()
	if e, ok := r.capabilities.get(objKey); ok && e.key == key && now.Before(e.due) {
		res := e.result
		res.recheckAfter = e.due.Sub(now)
		return &res
	}

	res := r.runCapabilityCheck(ctx, obj, rel, nirs)
	wait := r.capabilityInterval()
	if res.err != nil && retryable(res.err) {
		wait = clients.Classify(res.err).RetryAfter
		if wait <= 0 {
			wait = r.outageRetry()
		}
		wait = min(wait, maxOutageRetry, r.capabilityInterval())
		res.retryAt = now.Add(wait)
	} else if res.err != nil && credentialsProblem(res.err) {
		// Secrets are not watched: look again soon after a fix.
		wait = min(credentialsRetryInterval, r.capabilityInterval())
	}
	res.recheckAfter = wait
	r.capabilities.put(objKey, capabilityEntry{key: key, result: res, due: now.Add(wait)})

	if res.err == nil && !capability.Capable(res.findings) {
		// A Warning when the cloud turns incapable or lacks something new: events only on change.
		msg := kstatus.BoundMessage(missingMessage(res.findings))
		if was := conditions.Get(obj, infrav1.CloudCapableCondition); was == nil || was.Status != metav1.ConditionFalse || was.Message != msg {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, infrav1.CapabilityMissingReason, "CheckCapability", "%s", kstatus.Bound(msg, kstatus.MaxEventNoteBytes))
		}
	}
	return &res
}

func (r *OpenStackClusterStackReleaseReconciler) runCapabilityCheck(ctx context.Context, obj *infrav1.OpenStackClusterStackRelease, rel *release.Release, nirs []*infrav1.OpenStackNodeImageRelease) capabilityResult {
	objs, err := render.Chart(ctx, rel.ClusterClassChart, render.Options{
		ReleaseName: rel.Name.Prefix(),
		Namespace:   obj.Namespace,
		KubeVersion: rel.Metadata.Versions.Kubernetes,
	})
	if err != nil {
		return capabilityResult{err: &renderError{err: err}}
	}
	stored := func(imageName string) bool {
		return slices.ContainsFunc(nirs, func(nir *infrav1.OpenStackNodeImageRelease) bool {
			return nir.Status.Ready && nir.Spec.Image != nil && nir.Spec.Image.CreateOpts != nil && nir.Spec.Image.CreateOpts.Name == imageName
		})
	}
	needs := capability.NeedsOf(objs, rel.Name.ClusterClassName(), rel.Metadata.Versions.Kubernetes, rel.NodeImages, stored)
	answers, err := r.cloudAnswers(ctx, obj)
	if err != nil {
		return capabilityResult{needs: needs, err: err}
	}
	return capabilityResult{needs: needs, findings: capability.Check(needs, answers)}
}

// cloudAnswers returns what the cloud of obj's credentials answered within the check interval,
// or asks it: the answers do not depend on the release, so the releases of one project (usually
// every release of a stack) share one read per interval.
func (r *OpenStackClusterStackReleaseReconciler) cloudAnswers(ctx context.Context, obj *infrav1.OpenStackClusterStackRelease) (capability.Answers, error) {
	secret := scope.DefaultCloudName
	if ref := obj.Spec.IdentityRef; ref != nil && ref.Name != "" {
		secret = ref.Name
	}
	key := types.NamespacedName{Namespace: obj.Namespace, Name: secret}
	if a, ok := r.answers.get(key, r.now()); ok {
		return a, nil
	}
	// Releases of one project reconciled at the same time wait for one read instead of each
	// making their own.
	v, err, _ := r.answers.flight.Do(key.String(), func() (any, error) {
		now := r.now()
		if a, ok := r.answers.get(key, now); ok {
			return a, nil
		}
		reader, err := r.Clouds.CloudReader(ctx, obj.Namespace, obj.Spec.IdentityRef)
		if err != nil {
			return capability.Answers{}, err
		}
		a, err := capability.Read(ctx, reader)
		if err != nil {
			return capability.Answers{}, err
		}
		r.answers.put(key, a, now, now.Add(r.capabilityInterval()))
		return a, nil
	})
	return v.(capability.Answers), err
}

// answersCache keeps the cloud's answers per credentials Secret until they are due. Only
// complete reads are kept; a failed one is asked again by the next check.
type answersCache struct {
	mu      sync.Mutex
	entries map[types.NamespacedName]answersEntry
	flight  singleflight.Group
}

type answersEntry struct {
	answers capability.Answers
	due     time.Time
}

func (c *answersCache) get(k types.NamespacedName, now time.Time) (capability.Answers, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || !now.Before(e.due) {
		return capability.Answers{}, false
	}
	return e.answers, true
}

// put keeps the answers for k and drops those that are due, so Secrets no longer used do not
// stay.
func (c *answersCache) put(k types.NamespacedName, a capability.Answers, now, due time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[types.NamespacedName]answersEntry{}
	}
	for key, e := range c.entries {
		if !now.Before(e.due) {
			delete(c.entries, key)
		}
	}
	c.entries[k] = answersEntry{answers: a, due: due}
}

// renderError says the cluster-class chart could not be rendered for the check; the
// ClusterStackRelease reports the rendering itself.
type renderError struct{ err error }

func (e *renderError) Error() string { return "rendering the cluster-class chart: " + e.err.Error() }
func (e *renderError) Unwrap() error { return e.err }

// retryable says a check failed for a reason that passes by itself (an outage, a rendering
// process that could not run): it is tried again soon, not after the interval.
func retryable(err error) bool {
	if re := (*renderError)(nil); errors.As(err, &re) {
		// A rendering process that could not run or was cancelled says nothing about the chart.
		// A chart over a budget renders the same way again: it waits for the interval.
		return !render.IsBudgetError(err) &&
			(errors.Is(err, render.ErrRenderUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
	}
	if ce := (*scope.CredentialsError)(nil); errors.As(err, &ce) {
		return ce.Retryable()
	}
	return clients.Classify(err).Kind == clients.KindRetryable
}

func (r *OpenStackClusterStackReleaseReconciler) capabilityInterval() time.Duration {
	if r.CapabilityInterval > 0 {
		return r.CapabilityInterval
	}
	return DefaultCapabilityCheckInterval
}

func (r *OpenStackClusterStackReleaseReconciler) outageRetry() time.Duration {
	if r.OutageRetry > 0 {
		return r.OutageRetry
	}
	return defaultOutageRetry
}

func (r *OpenStackClusterStackReleaseReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// missingMessage is the message of a cloud that lacks something: what is missing first, then
// what has a fallback.
func missingMessage(findings []capability.Finding) string {
	var missing, notes []string
	for _, f := range findings {
		if f.Advisory {
			notes = append(notes, f.Message)
		} else {
			missing = append(missing, f.Message)
		}
	}
	msg := fmt.Sprintf("Clusters that keep the class defaults cannot be served: %s", joinSemi(missing))
	if len(notes) > 0 {
		msg += "; note: " + joinSemi(notes)
	}
	return msg
}
