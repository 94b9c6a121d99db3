// Package apply makes a set of rendered objects live with server-side apply, under the operator's
// own field manager and never by force, and keeps an inventory of what it applied so that objects
// that are no longer rendered are pruned. It writes only what differs, so that a converged set
// costs zero API writes however often it is reconciled.
//
// # Drift detection
//
// A rendered object is applied when it is missing, when the annotation HashAnnotation on the live
// object differs from the hash of the rendered content (the chart output changed), or when it
// drifted: a rendered field whose live value differs AND that our field manager no longer owns.
//
// The ownership test is what keeps this free of hot loops without a dry-run request: the API
// server normalises what it stores (quantities such as "1000m" become "1", empty values are
// dropped, defaults are filled in), so a plain "rendered is a subset of live" comparison would
// see a difference after every apply and re-apply forever. But normalisation never takes a field
// away from the manager that applied it, whereas every real change by someone else does: an
// update by another client that changes or removes a field moves that field out of our entry in
// metadata.managedFields. So a difference in a field we still own is normalisation of what we
// applied (the hash proves we applied exactly this content), and a difference in a field we no
// longer own is drift.
//
// Drift repair is an apply without force. A field that another manager removed is simply
// restored; a field that another manager changed is now owned by that manager, so the apply fails
// with a *ConflictError naming it, and nothing is overwritten: the operator reports the conflict
// instead of fighting another controller or a person.
//
// # Objects shared between appliers
//
// Several appliers that keep their own inventories may render the same object (two releases of
// one cluster stack render the ORC Image named after their common node image). Server-side apply
// does not separate them when they share a field manager, and separate field managers would make
// it worse: each would keep the fields only it sets (the object would carry the union of both
// contents) and their differing values would conflict. So exactly one of them writes the object,
// and the others only record it: the caller decides which, and says so with WithSharing. A
// recorded object is part of the inventory like a written one, so that the other appliers see
// who still needs it; the caller also names such objects when it would otherwise delete them
// (prune or Delete), and they are dropped from this inventory, not deleted.
//
// # One Apply, by job
//
// An Apply decides (decide.go: read every desired object, compare it with what was applied and
// with its drift, and tell what to write, skip and prune), authorizes (authorize.go: one
// SelfSubjectAccessReview for everything, and only when that is denied one per permission the
// decision needs, before anything is written), writes (write.go: server-side apply in render
// order where it matters) and prunes (prune.go: delete what is no longer rendered). Versions
// (versions.go) is the cheap drift check of an inventory whose objects carry InventoryLabel. Which kinds exist and which are namespaced is the cluster's
// discovery (kinds.go): a kind it does not serve is a *MissingKindsError wherever it is found.
package apply

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HashAnnotation holds, on every applied object, the hash of the rendered content last applied.
const HashAnnotation = "clusterstack.x-k8s.io/applied-hash"

// InventoryLabel holds, on every object an Applier with an Inventory applied, that inventory's
// name: Versions finds the objects of one inventory with one metadata-only list per kind.
const InventoryLabel = "clusterstack.x-k8s.io/inventory"

// parallelRequests bounds the requests of one Apply (reads, access reviews, writes) that are in
// flight at once: enough to hide round trips, few enough not to crowd the client's rate limit or
// a workload cluster's API server.
const parallelRequests = 8

// Ref identifies one applied object. The inventory key is Group, Kind, Namespace and Name;
// Version is the version it was applied in.
type Ref struct {
	Group, Version, Kind, Namespace, Name string
}

// RefOf returns the Ref of obj.
func RefOf(obj *unstructured.Unstructured) Ref {
	gvk := obj.GroupVersionKind()
	return Ref{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// GroupVersionKind returns the Ref's group, version and kind.
func (r Ref) GroupVersionKind() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind}
}

// Key returns the Ref without its version: two Refs with the same Key are the same object.
func (r Ref) Key() Ref {
	r.Version = ""
	return r
}

// String formats the Ref as "Kind.group namespace/name" ("Kind namespace/name" for the core group).
func (r Ref) String() string {
	kind := r.Kind
	if r.Group != "" {
		kind += "." + r.Group
	}
	if r.Namespace == "" {
		return kind + " " + r.Name
	}
	return kind + " " + r.Namespace + "/" + r.Name
}

func (r Ref) object() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(r.GroupVersionKind())
	u.SetNamespace(r.Namespace)
	u.SetName(r.Name)
	return u
}

// Applier applies object sets. The zero value is not usable: Client and FieldManager are required.
type Applier struct {
	// Client reaches the API server the objects go to. Reads may come from a cache.
	Client client.Client
	// FieldManager is the operator's field manager, e.g. "clusterstack-operator".
	FieldManager string

	// TrustOwnWrites makes the Applier remember the content of every object it writes, and not
	// read such an object again when a later Apply of the same Applier desires the same content:
	// it is decided unchanged. Set it on an Applier that lives for one reconcile (a workload
	// cluster's, whose stages and steady state apply the same objects one after the other), not
	// on a long-lived one: its drift checks would read nothing it wrote.
	TrustOwnWrites bool
	// Inventory, when set, names the inventory the Applier keeps (e.g. the UID of the object whose
	// status holds it; at most 63 characters): every object it applies carries it in
	// InventoryLabel, and Versions can tell cheaply whether any of them changed.
	Inventory string

	// keepOnPrune, heldByOther and writtenByOther are set with WithKeepOnPrune and WithSharing.
	keepOnPrune, heldByOther, writtenByOther func(Ref) bool

	// cache remembers allowed SelfSubjectAccessReview answers, and (TrustOwnWrites) the content
	// written; created on first use and shared by copies made with WithKeepOnPrune and
	// WithSharing.
	cache *accessCache
}

// WithKeepOnPrune returns a copy of a that protects objects of the previous inventory from
// pruning: objects for which keep returns true are neither deleted nor dropped from the inventory
// (e.g. an ORC Image while a Cluster still uses the release). The copy shares a's memory of
// permissions; use it rather than copying an Applier by value before its first use.
func (a *Applier) WithKeepOnPrune(keep func(Ref) bool) *Applier {
	a.access()
	c := *a
	c.keepOnPrune = keep
	return &c
}

// WithSharing returns a copy of a for objects shared with other appliers (see the package
// documentation), sharing a's memory of permissions as WithKeepOnPrune does. writtenByOther names
// desired objects that another applier writes: they are recorded in the inventory
// (Result.Applied, and Result.Deferred) but neither read nor written, and need no permission.
// heldByOther names objects that another applier's inventory still holds: an object of the
// previous inventory that Apply would prune, or an object that Delete would delete, is dropped
// from this inventory without being deleted (Result.Released). A kept object (WithKeepOnPrune)
// stays in this inventory whatever heldByOther says.
func (a *Applier) WithSharing(writtenByOther, heldByOther func(Ref) bool) *Applier {
	a.access()
	c := *a
	c.writtenByOther = writtenByOther
	c.heldByOther = heldByOther
	return &c
}

// Result is the outcome of Apply.
type Result struct {
	// Applied is the new inventory: every desired object in order, followed by the objects of the
	// previous inventory that could not be pruned (failed or kept), so that they are not lost.
	Applied []Ref
	// Changed are the objects written in this call (created, changed or drift repaired).
	Changed []Ref
	// Drifted is the part of Changed that was written only because someone else changed or
	// deleted the live object (the rendered content was the same as last applied): what a
	// controller reports as "drift repaired".
	Drifted []Ref
	// Pruned are the objects of the previous inventory that were deleted (or already gone).
	Pruned []Ref
	// Deferred are the desired objects that another applier writes (WithSharing): recorded in
	// Applied, not read or written.
	Deferred []Ref
	// Released are the objects of the previous inventory that another applier still holds
	// (WithSharing): dropped from the inventory, not deleted.
	Released []Ref
	// Failed holds per-object errors; everything else was still applied.
	Failed map[Ref]error
	// Versions holds, by Ref.Key, the resourceVersion of every desired object that was read and
	// found unchanged, or written (the version the API server answered the write with; not for
	// CRDs, see writeOne). When it covers every desired object, the set was converged as read or
	// written: a later Versions call that finds the same versions proves it still is (see
	// Versions).
	Versions map[Ref]string
}

// Err joins the per-object errors in the order of Applied; nil when none failed.
func (r Result) Err() error {
	var errs []error
	for _, ref := range r.Applied {
		if err, ok := r.Failed[ref]; ok {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Apply makes the live objects match desired with server-side apply, writing only objects that
// are missing, changed or drifted (see the package documentation), then deletes the objects of
// previous that are not desired any more.
//
// It works in two phases. First it reads every desired object and decides what needs a write;
// a set that needs none returns here, having made no write and no SelfSubjectAccessReview. If
// something must be written or pruned, it checks with SelfSubjectAccessReviews that the
// client's user may do all of it (one review when the user may do everything; else one per
// permission: patch, create for objects that do not exist, delete for pruning) and, if any
// permission is denied, returns a *ForbiddenError and an empty Result
// without writing or deleting anything: a set is not half-applied for want of permissions.
// Otherwise it writes and prunes; a failure of one object does not stop the others, it is
// recorded in Result.Failed. The error is only for failures of the whole call.
func (a *Applier) Apply(ctx context.Context, desired []*unstructured.Unstructured, previous []Ref) (Result, error) {
	if a.Client == nil || a.FieldManager == "" {
		return Result{}, errors.New("applying objects: the Applier needs a Client and a FieldManager")
	}
	crds := definedByCRDs(desired)
	d, err := a.decide(ctx, desired, previous, crds)
	if err != nil {
		return Result{}, err
	}
	if err := a.authorizeDecision(ctx, d, crds); err != nil {
		return Result{}, err
	}
	a.writeDecided(ctx, d)
	if err := ctx.Err(); err != nil {
		return d.res, fmt.Errorf("applying objects: %w", err)
	}
	a.pruneDecided(ctx, d)
	return d.res, nil
}

// inParallel calls f for 0..n-1, at most parallelRequests calls at a time, and returns when all
// have returned.
func inParallel(n int, f func(i int)) {
	var g errgroup.Group
	g.SetLimit(parallelRequests)
	for i := range n {
		g.Go(func() error {
			f(i)
			return nil
		})
	}
	_ = g.Wait() // f reports through what it captures; the calls return no error
}

// Prime reads one object of each kind of desired and decides and writes nothing, so that what
// the first request of a kind costs is paid before an apply that waits for it: the API server
// sets up a custom resource's storage on its first request (on a fresh API server the first
// apply of a ClusterClass and its four templates took 0.17-0.31 s, later ones 0.05 s), the
// client finds the kind's REST mapping and opens its connections. A release calls it while it
// waits for its node images. The answers are dropped, errors included: the apply reads again
// and reports what it finds. Objects without a namespace are read in namespace (the client drops
// it for cluster-scoped kinds).
func (a *Applier) Prime(ctx context.Context, desired []*unstructured.Unstructured, namespace string) {
	if a == nil || a.Client == nil {
		return
	}
	seen := map[schema.GroupVersionKind]bool{}
	var first []*unstructured.Unstructured
	for _, o := range desired {
		if gvk := o.GroupVersionKind(); !seen[gvk] {
			seen[gvk] = true
			first = append(first, o)
		}
	}
	inParallel(len(first), func(i int) {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(first[i].GroupVersionKind())
		key := client.ObjectKey{Namespace: first[i].GetNamespace(), Name: first[i].GetName()}
		if key.Namespace == "" {
			key.Namespace = namespace
		}
		_ = a.Client.Get(ctx, key, live)
	})
}
