package clusteraddon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"

	ctrl "sigs.k8s.io/controller-runtime"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
)

// convergedState is what the last drift check that read every addon object of a ClusterAddon
// found: the digest of what the steady state is made from, and the live objects'
// resourceVersions, all unchanged then.
//
// It makes the next drift checks cheap. While the digest is the same (same release, same input
// to its charts, same inventory), the charts would render the same objects; while the live
// versions are the same (one metadata-only list per kind, apply.Versions), nobody wrote any of
// them. Then the steady state holds without rendering (a child process) and without reading an
// object. Anything else, or no record (after a restart), is a full check. The record is kept in
// memory per ClusterAddon UID and forgotten with the ClusterAddon: a few hundred bytes per
// Cluster.
type convergedState struct {
	digest   string
	versions map[apply.Ref]string
}

// steadyDigest is the digest of what holdSteadyState makes the steady state from.
func steadyDigest(release string, in addon.Input, resources []csv1alpha1.Resource) (string, error) {
	data, err := json.Marshal(struct {
		Release   string
		Input     addon.Input
		Resources []csv1alpha1.Resource
	}{release, in, resources})
	if err != nil {
		return "", fmt.Errorf("hashing the addon input: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// stillConverged reports whether the steady state of ca is as the last full check found it
// (see convergedState). A failed list only means a full check.
func (r *ClusterAddonReconciler) stillConverged(ctx context.Context, ca *csv1alpha1.ClusterAddon, digest string, t *target) bool {
	v, ok := r.converged.Load(ca.UID)
	if !ok || v.(convergedState).digest != digest {
		return false
	}
	live, err := t.applier.Versions(ctx, apply.FromResources(ca.Status.Resources))
	if err != nil {
		ctrl.LoggerFrom(ctx).V(4).Info("Listing the versions of addon objects failed, checking them in full", "Error", err.Error())
		return false
	}
	return maps.Equal(live, v.(convergedState).versions)
}

// recordConverged remembers a steady state that an Apply read in full and found unchanged: the
// digest of what it was made from and every object's resourceVersion.
func (r *ClusterAddonReconciler) recordConverged(ca *csv1alpha1.ClusterAddon, rel string, in addon.Input, result apply.Result) {
	if len(result.Changed) > 0 || len(result.Pruned) > 0 || len(result.Failed) > 0 {
		return
	}
	for _, ref := range result.Applied {
		if _, ok := result.Versions[ref.Key()]; !ok {
			return // written or trusted in this reconcile: its version is not known
		}
	}
	digest, err := steadyDigest(rel, in, ca.Status.Resources)
	if err != nil {
		return
	}
	r.converged.Store(ca.UID, convergedState{digest: digest, versions: result.Versions})
}
