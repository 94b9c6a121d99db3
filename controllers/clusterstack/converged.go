package clusterstack

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
)

// convergence is what the last full reconcile of a release found when its apply wrote nothing
// and had nothing to prune: the release's objects were as rendered. A later reconcile whose
// inputs are all the same (the release object and its content, its inventory, which objects
// other releases write, the watched objects' versions) and whose drift check is not due renders
// and applies nothing: rendering is a child process and the apply reads every object, and a
// ready release is reconciled on every event of a Cluster that uses it.
//
// What it compares, and why that is enough:
//   - the key: the release's UID and generation, its content digest and namespace, which is
//     everything the rendering depends on;
//   - the inventory (status.resources), as written: a change by anyone is looked at fully;
//   - the objects other releases write (sharing): another release taking over or letting go
//     changes what this one writes;
//   - the resourceVersions of the watched objects (ClusterClasses, ORC Images), from the cache:
//     any change to them, drift included, bumps their version and their watch brings the release
//     here. Objects of kinds that are not watched (the templates) are compared by the drift
//     check, as before.
//
// Clusters do not enter: they only decide what may be pruned, and a converged release prunes
// nothing.
type convergence struct {
	key       string
	inventory string
	sharing   string
	// versions are the resourceVersions of the watched objects, by their Ref (with version).
	versions map[apply.Ref]string
	driftDue time.Time
}

func convergenceKey(csr *clusterstackv1alpha1.ClusterStackRelease, rel *release.Release) string {
	if rel.Digest == "" {
		return "" // content not known by digest: nothing to key on
	}
	return fmt.Sprintf("%s %d %s %s", csr.UID, csr.Generation, rel.Digest, csr.Namespace)
}

// watchedObject reports whether changes of ref's kind reach the release through a watch.
func watchedObject(ref apply.Ref) bool {
	return (ref.Group == clusterv1.GroupVersion.Group && ref.Kind == "ClusterClass") ||
		(ref.Group == orcImage.Group && ref.Kind == orcImage.Kind)
}

func inventoryOf(csr *clusterstackv1alpha1.ClusterStackRelease) string {
	return fmt.Sprint(csr.Status.Resources)
}

// sharingOf lists the objects of refs that another release writes.
func sharingOf(s *sharing, refs []apply.Ref) string {
	var out []string
	for _, ref := range refs {
		if s.writtenByOther(ref) {
			out = append(out, ref.Key().String())
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// remember records a convergence after an apply of objs that pruned and released nothing and
// knows the version of every object it writes itself (res.Versions: as read, or as the write
// left it); otherwise it forgets the release's. An apply that wrote counts: what it wrote is the
// rendering at the version the API server answered, so the events its own writes cause (the
// ClusterClass it created, the release's status) find the release converged instead of applying
// everything a second time.
func (r *ClusterStackReleaseReconciler) remember(csr *clusterstackv1alpha1.ClusterStackRelease, key string, objs int, res apply.Result, shared *sharing) {
	nn := client.ObjectKeyFromObject(csr)
	r.convergedMu.Lock()
	defer r.convergedMu.Unlock()
	delete(r.converged, nn)
	if key == "" || len(res.Pruned) > 0 || len(res.Released) > 0 || len(res.Failed) > 0 || len(res.Applied) != objs {
		return
	}
	c := convergence{key: key, inventory: inventoryOf(csr), sharing: sharingOf(shared, res.Applied), versions: map[apply.Ref]string{}, driftDue: time.Now().Add(r.driftCheck())}
	deferred := map[apply.Ref]bool{}
	for _, ref := range res.Deferred {
		deferred[ref.Key()] = true
	}
	for _, ref := range res.Applied {
		if deferred[ref.Key()] {
			continue
		}
		v, ok := res.Versions[ref.Key()]
		if !ok {
			return // not read as it is: nothing to compare a later reconcile with
		}
		if watchedObject(ref) {
			c.versions[ref] = v // with its version, to read it back in the form it was applied
		}
	}
	if r.converged == nil {
		r.converged = map[types.NamespacedName]convergence{}
	}
	r.converged[nn] = c
}

// stillConverged reports whether the release's last convergence still holds (see convergence),
// and how long until its drift check is due. It reads only the cache.
func (r *ClusterStackReleaseReconciler) stillConverged(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease, rel *release.Release) (time.Duration, bool) {
	nn := client.ObjectKeyFromObject(csr)
	r.convergedMu.Lock()
	c, ok := r.converged[nn]
	r.convergedMu.Unlock()
	key := convergenceKey(csr, rel)
	due := time.Until(c.driftDue)
	if !ok || key == "" || c.key != key || due <= 0 || c.inventory != inventoryOf(csr) {
		return 0, false
	}
	refs := apply.FromResources(csr.Status.Resources)
	// The cache is enough: what changes these inputs is an event of the same cache, which brings
	// the release here again once the cache holds it.
	shared, err := r.readSharingFrom(ctx, r.Client, csr, refs)
	if err != nil || sharingOf(shared, refs) != c.sharing {
		return 0, false
	}
	for ref, version := range c.versions {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(ref.GroupVersionKind())
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, m); err != nil || m.ResourceVersion != version {
			return 0, false
		}
	}
	return due, true
}

// forgetConvergence drops what is kept of a release that went.
func (r *ClusterStackReleaseReconciler) forgetConvergence(nn types.NamespacedName) {
	r.convergedMu.Lock()
	defer r.convergedMu.Unlock()
	delete(r.converged, nn)
}
