package clusterstack

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
)

// Objects shared between releases.
//
// Releases of one stack may render the same object: the published openstack/scs stack names its
// ORC Image after the node image (ubuntu-capi-image-v1.32.5), so v1 and v2 render one Image. The
// rule, decided by each release from the inventories (status.resources) of the other releases,
// read live from the API server:
//
//   - Every release that renders the object records it in its inventory, so the inventories say
//     who still needs it. Nothing else records it: no annotation or owner reference on the object,
//     which would cost writes whenever the set of releases changes.
//   - One release writes it: the newest (by release name order: provider, stack, Kubernetes minor,
//     version) of the releases that render it and are not being deleted. Its content is live and
//     its name is in ReleaseLabel; the others record the object without reading or writing it,
//     so nothing flips between them and a converged pair makes no write. When the newest goes,
//     the next newest takes the object over (the same object, with its content) once it sees
//     the other's inventory change.
//   - A release never deletes (prunes, or deletes with itself) an object that another release
//     still holds: one not being deleted, or one being deleted but still used by a Cluster (it
//     keeps its objects until the Cluster goes). A release that has not applied yet (waiting for
//     its node images, say) is rendered to learn what it will hold: autoSubscribe deletes the old
//     release as soon as the new one exists.
//
// All releases share one field manager: with one writer, a take-over replaces the previous
// owner's content exactly (fields only it set are removed), where per-release field managers
// would leave the union of both contents and conflict on the fields they set differently.

// releaseInfo is one release as the sharing rule sees it.
type releaseInfo struct {
	csr    *clusterstackv1alpha1.ClusterStackRelease
	parsed name.Release
	parses bool
}

// newerThan orders releases for ownership: by parsed release name (see name.Release.Compare),
// names that do not parse before those that do, then by namespace and name, so that the order
// is total and every release computes the same owner.
func (a releaseInfo) newerThan(b releaseInfo) bool {
	if a.parses != b.parses {
		return a.parses
	}
	if a.parses {
		if c := a.parsed.Compare(b.parsed); c != 0 {
			return c > 0
		}
	}
	if a.csr.Namespace != b.csr.Namespace {
		return a.csr.Namespace > b.csr.Namespace
	}
	return a.csr.Name > b.csr.Name
}

func infoOf(csr *clusterstackv1alpha1.ClusterStackRelease) releaseInfo {
	n, err := name.Parse(csr.Name)
	return releaseInfo{csr: csr, parsed: n, parses: err == nil}
}

// sharing is what the other releases hold of one release's objects.
type sharing struct {
	self releaseInfo
	// holders lists, per object key, the other releases whose inventory has the object.
	holders map[apply.Ref][]releaseInfo
	// others are all the other releases that were read, with the holders among them.
	others []releaseInfo
}

// readSharing lists, from the API server, the other releases that may hold the objects of refs:
// those of csr's namespace, or of every namespace when one of refs lies outside it.
func (r *ClusterStackReleaseReconciler) readSharing(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease, refs []apply.Ref) (*sharing, error) {
	return r.readSharingFrom(ctx, r.APIReader, csr, refs)
}

// readSharingFrom is readSharing from reader.
func (r *ClusterStackReleaseReconciler) readSharingFrom(ctx context.Context, reader client.Reader, csr *clusterstackv1alpha1.ClusterStackRelease, refs []apply.Ref) (*sharing, error) {
	var opts []client.ListOption
	scope := "namespace " + csr.Namespace
	outside := false
	for _, ref := range refs {
		if ref.Namespace != csr.Namespace {
			outside = true
			break
		}
	}
	if outside {
		scope = "all namespaces"
	} else {
		opts = append(opts, client.InNamespace(csr.Namespace))
	}
	var list clusterstackv1alpha1.ClusterStackReleaseList
	if err := reader.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("listing the ClusterStackReleases of %s: %w", scope, err)
	}
	s := &sharing{self: infoOf(csr), holders: map[apply.Ref][]releaseInfo{}}
	for i := range list.Items {
		o := &list.Items[i]
		if o.Namespace == csr.Namespace && o.Name == csr.Name {
			continue
		}
		info := infoOf(o)
		s.others = append(s.others, info)
		for _, ref := range apply.FromResources(o.Status.Resources) {
			s.holders[ref.Key()] = append(s.holders[ref.Key()], info)
		}
	}
	return s, nil
}

// writtenByOther reports whether a newer release that is not being deleted holds ref: it writes
// the object, this release only records it.
func (s *sharing) writtenByOther(ref apply.Ref) bool {
	for _, h := range s.holders[ref.Key()] {
		if h.csr.DeletionTimestamp.IsZero() && h.newerThan(s.self) {
			return true
		}
	}
	return false
}

// heldElsewhere computes which of candidates (objects this release would delete) another release
// still holds or, not having applied yet, will hold. It reads the Clusters of the namespaces of
// deleting holders and renders releases that have not applied; both only when there are
// candidates, which a converged release has none of.
func (r *ClusterStackReleaseReconciler) heldElsewhere(ctx context.Context, s *sharing, candidates []apply.Ref) (map[apply.Ref]bool, error) {
	held := map[apply.Ref]bool{}
	if len(candidates) == 0 {
		return held, nil
	}
	inUse := map[string]resolver.Usage{} // by namespace
	usedByCluster := func(csr *clusterstackv1alpha1.ClusterStackRelease) (bool, error) {
		users, ok := inUse[csr.Namespace]
		if !ok {
			var err error
			if users, err = resolver.ClustersByRelease(ctx, r.APIReader, csr.Namespace); err != nil {
				return false, err
			}
			inUse[csr.Namespace] = users
		}
		return len(users[csr.Name].Clusters) > 0, nil
	}
	for _, ref := range candidates {
		for _, h := range s.holders[ref.Key()] {
			// A release being deleted that no Cluster uses deletes its objects itself (subject
			// to this same check): counting it would let two releases deleted together each
			// leave the object to the other.
			keeps := h.csr.DeletionTimestamp.IsZero()
			if !keeps {
				var err error
				if keeps, err = usedByCluster(h.csr); err != nil {
					return nil, err
				}
			}
			if keeps {
				held[ref.Key()] = true
				break
			}
		}
	}
	for _, o := range s.others {
		if !o.csr.DeletionTimestamp.IsZero() || conditions.IsTrue(o.csr, clusterstackv1alpha1.ResourcesAppliedCondition) {
			continue
		}
		// Not applied (yet): its inventory may lack what it renders.
		objs, err := r.renderOther(ctx, o.csr)
		if err != nil {
			// A release that cannot be rendered now is not waited for: it may never be
			// (an invalid or unpublished version), and its inventory was counted above.
			ctrl.LoggerFrom(ctx).V(4).Info("Could not render a release to check for shared objects", "other", o.csr.Name, "error", err.Error())
			continue
		}
		for _, obj := range objs {
			held[apply.RefOf(obj).Key()] = true
		}
	}
	out := map[apply.Ref]bool{}
	for _, ref := range candidates {
		if held[ref.Key()] {
			out[ref.Key()] = true
		}
	}
	return out, nil
}

// renderOther renders another release's cluster-class chart as that release would.
func (r *ClusterStackReleaseReconciler) renderOther(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) ([]*unstructured.Unstructured, error) {
	rel, err := releaseOf(ctx, r.Releases, csr)
	if err != nil {
		return nil, err
	}
	return renderRelease(ctx, rel, csr.Namespace, r.Mapper)
}

// keyed returns a predicate over Refs that is true for the keys in set.
func keyed(set map[apply.Ref]bool) func(apply.Ref) bool {
	return func(ref apply.Ref) bool { return set[ref.Key()] }
}

// releasesHolding returns the requests of every release of obj's namespace whose inventory (in
// the cache) lists obj, and of the release in its ReleaseLabel: a shared object's change (an ORC
// Image becoming Available) concerns every release that records it, not only its writer.
func (r *ClusterStackReleaseReconciler) releasesHolding(ctx context.Context, obj client.Object) []reconcile.Request {
	reqs := releaseOfAppliedObject(ctx, obj)
	gvk := obj.GetObjectKind().GroupVersionKind()
	key := apply.Ref{Group: gvk.Group, Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
	var list clusterstackv1alpha1.ClusterStackReleaseList
	if err := r.Client.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing ClusterStackReleases for an applied object")
		return reqs
	}
	seen := map[types.NamespacedName]bool{}
	for _, q := range reqs {
		seen[q.NamespacedName] = true
	}
	for i := range list.Items {
		csr := &list.Items[i]
		nn := types.NamespacedName{Namespace: csr.Namespace, Name: csr.Name}
		if seen[nn] {
			continue
		}
		for _, res := range csr.Status.Resources {
			if res.Group == key.Group && res.Kind == key.Kind && res.Namespace == key.Namespace && res.Name == key.Name {
				seen[nn] = true
				reqs = append(reqs, reconcile.Request{NamespacedName: nn})
				break
			}
		}
	}
	return reqs
}

// releasesSharingWith returns the requests of the other releases of the namespace whose
// inventory shares an object with csr's: when csr lets an object go (deleted, or no longer
// rendering it), the next newest holder takes it over.
func (r *ClusterStackReleaseReconciler) releasesSharingWith(ctx context.Context, obj client.Object) []reconcile.Request {
	csr, ok := obj.(*clusterstackv1alpha1.ClusterStackRelease)
	if !ok || len(csr.Status.Resources) == 0 {
		return nil
	}
	mine := map[apply.Ref]bool{}
	for _, ref := range apply.FromResources(csr.Status.Resources) {
		mine[ref.Key()] = true
	}
	var list clusterstackv1alpha1.ClusterStackReleaseList
	if err := r.Client.List(ctx, &list, client.InNamespace(csr.Namespace)); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing ClusterStackReleases for shared objects")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		o := &list.Items[i]
		if o.Name == csr.Name {
			continue
		}
		for _, ref := range apply.FromResources(o.Status.Resources) {
			if mine[ref.Key()] {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.Namespace, Name: o.Name}})
				break
			}
		}
	}
	return reqs
}

// inventoryOrDeletionChanged passes the release events after which another release may have to
// take a shared object over: its inventory changed, it started being deleted, or it is gone.
var inventoryOrDeletionChanged = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*clusterstackv1alpha1.ClusterStackRelease)
		n, okN := e.ObjectNew.(*clusterstackv1alpha1.ClusterStackRelease)
		if !okO || !okN {
			return false
		}
		return o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero() || inventoryKeys(o) != inventoryKeys(n)
	},
}

// inventoryKeys is the release's inventory as one comparable string of object keys.
func inventoryKeys(csr *clusterstackv1alpha1.ClusterStackRelease) string {
	var b strings.Builder
	for _, res := range csr.Status.Resources {
		fmt.Fprintf(&b, "%s/%s/%s/%s;", res.Group, res.Kind, res.Namespace, res.Name)
	}
	return b.String()
}
