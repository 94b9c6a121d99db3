package clusteraddon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
)

// convergedState is what the last Apply that read or wrote every addon object of a ClusterAddon
// left: the digests of what the steady state is made from and of what it rendered, the live
// objects' resourceVersions then, and when the live objects were last seen so.
//
// It makes the next reconciles cheap. While the input digest is the same (same release, same
// input to its charts, same inventory), the charts would render the same objects; while the
// output digest is the same, they did. While the live versions are the same (one metadata-only
// list per kind, apply.Versions), nobody wrote any of them: the steady state holds without
// reading an object, and with the same input without rendering either. And within a drift-check
// interval of the last look at the live objects, a reconcile brought by an event of the
// management cluster (a Cluster's status, a spec write) with the same input or output does not
// look again: such events say nothing about the workload cluster, whose drift is checked on its
// interval. Anything else, or no record (after a restart), is a full check. The record is kept in
// memory per ClusterAddon UID and forgotten with the ClusterAddon: a few hundred bytes per
// Cluster.
type convergedState struct {
	input, output string
	versions      map[apply.Ref]string
	checked       time.Time
}

// steadyDigest is the digest of what holdSteadyState makes the steady state from.
func steadyDigest(release string, in addon.Input, resources []csv1alpha1.Resource) (string, error) {
	return digest(struct {
		Release   string
		Input     addon.Input
		Resources []csv1alpha1.Resource
	}{release, in, resources})
}

// outputDigest is the digest of the steady state's rendered objects and the inventory they are
// applied over.
func outputDigest(desired []*unstructured.Unstructured, resources []csv1alpha1.Resource) (string, error) {
	objs := make([]map[string]any, len(desired))
	for i, o := range desired {
		objs[i] = o.Object
	}
	return digest(struct {
		Objects   []map[string]any
		Resources []csv1alpha1.Resource
	}{objs, resources})
}

func digest(v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("hashing the addon state: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// stillConverged reports whether the steady state of ca is as the last record found it (see
// convergedState), given a record that matches: within the drift-check interval of the last look
// without a request (unless lookAgain), else when one list per kind finds the same versions. A
// failed list only means a full check.
func (r *ClusterAddonReconciler) stillConverged(ctx context.Context, ca *csv1alpha1.ClusterAddon, t *target, matches func(convergedState) bool, lookAgain bool) bool {
	v, ok := r.converged.Load(ca.UID)
	if !ok || !matches(v.(convergedState)) {
		return false
	}
	s := v.(convergedState)
	if !lookAgain && time.Since(s.checked) < r.driftInterval() {
		return true
	}
	live, err := t.applier.Versions(ctx, apply.FromResources(ca.Status.Resources))
	if err != nil {
		ctrl.LoggerFrom(ctx).V(4).Info("Listing the versions of addon objects failed, checking them in full", "Error", err.Error())
		return false
	}
	if !maps.Equal(live, s.versions) {
		return false
	}
	s.checked = time.Now()
	r.converged.Store(ca.UID, s)
	return true
}

// recordInput makes the record of ca, whose output was found still converged, match input too:
// the next reconcile with the same input needs no rendering.
func (r *ClusterAddonReconciler) recordInput(uid types.UID, input string) {
	if v, ok := r.converged.Load(uid); ok {
		s := v.(convergedState)
		s.input = input
		r.converged.Store(uid, s)
	}
}

// recordConverged remembers a steady state that an Apply read or wrote in full, with nothing
// failed: the digests of what it was made from and of what was rendered, and every object's
// resourceVersion.
func (r *ClusterAddonReconciler) recordConverged(ca *csv1alpha1.ClusterAddon, rel string, in addon.Input, desired []*unstructured.Unstructured, result apply.Result) {
	if len(result.Failed) > 0 {
		return
	}
	for _, ref := range result.Applied {
		if _, ok := result.Versions[ref.Key()]; !ok {
			return // its version is not known (a CRD just written)
		}
	}
	input, err := steadyDigest(rel, in, ca.Status.Resources)
	if err != nil {
		return
	}
	output, err := outputDigest(desired, ca.Status.Resources)
	if err != nil {
		return
	}
	r.converged.Store(ca.UID, convergedState{input: input, output: output, versions: result.Versions, checked: time.Now()})
}

// nextDriftCheck is how long until the live objects of ca are due to be looked at again.
func (r *ClusterAddonReconciler) nextDriftCheck(uid types.UID) time.Duration {
	interval := r.driftInterval()
	if v, ok := r.converged.Load(uid); ok {
		if d := interval - time.Since(v.(convergedState).checked); d > 0 {
			return d
		}
	}
	return interval
}

func (r *ClusterAddonReconciler) driftInterval() time.Duration {
	return r.interval(r.DriftCheckInterval, DefaultDriftCheckInterval)
}
