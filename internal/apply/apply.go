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
// and the others only record it: the caller decides which, and says so with WrittenByOther. A
// recorded object is part of the inventory like a written one, so that the other appliers see
// who still needs it; HeldByOther names such objects when the caller would otherwise delete them
// (prune or Delete), and they are dropped from this inventory, not deleted.
package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HashAnnotation holds, on every applied object, the hash of the rendered content last applied.
const HashAnnotation = "clusterstack.x-k8s.io/applied-hash"

// crdEstablishTimeout bounds the wait for a CRD applied in this call to be served, so that
// objects of its kind later in the same call can be applied.
const crdEstablishTimeout = 30 * time.Second

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
	// KeepOnPrune, when set, protects objects of the previous inventory from pruning: objects for
	// which it returns true are neither deleted nor dropped from the inventory (e.g. an ORC Image
	// while a Cluster still uses the release).
	KeepOnPrune func(Ref) bool
	// WrittenByOther, when set, names desired objects that another applier writes (see the
	// package documentation): they are recorded in the inventory (Result.Applied, and
	// Result.Deferred) but neither read nor written, and need no permission.
	WrittenByOther func(Ref) bool
	// HeldByOther, when set, names objects that another applier's inventory still holds: an
	// object of the previous inventory that Apply would prune, or an object that Delete would
	// delete, is dropped from this inventory without being deleted (Result.Released). KeepOnPrune
	// comes first: an object it keeps stays in this inventory too.
	HeldByOther func(Ref) bool

	// cache remembers allowed SelfSubjectAccessReview answers; created on first use and shared
	// by copies made with WithKeepOnPrune and WithSharing.
	cache *accessCache
}

// WithKeepOnPrune returns a copy of a with KeepOnPrune set to keep, sharing a's memory of
// permissions. Use it rather than copying an Applier by value before its first use.
func (a *Applier) WithKeepOnPrune(keep func(Ref) bool) *Applier {
	a.access()
	c := *a
	c.KeepOnPrune = keep
	return &c
}

// WithSharing returns a copy of a with WrittenByOther and HeldByOther set, sharing a's memory of
// permissions, as WithKeepOnPrune does.
func (a *Applier) WithSharing(writtenByOther, heldByOther func(Ref) bool) *Applier {
	a.access()
	c := *a
	c.WrittenByOther = writtenByOther
	c.HeldByOther = heldByOther
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
	// Deferred are the desired objects that another applier writes (WrittenByOther): recorded
	// in Applied, not read or written.
	Deferred []Ref
	// Released are the objects of the previous inventory that another applier still holds
	// (HeldByOther): dropped from the inventory, not deleted.
	Released []Ref
	// Failed holds per-object errors; everything else was still applied.
	Failed map[Ref]error
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

// ConflictError is the error of an object whose apply was refused because fields it sets are
// owned by other field managers. Nothing was forced.
type ConflictError struct {
	Ref Ref
	// Managers are the field managers owning the conflicting fields.
	Managers []string
	// Fields are the conflicting field paths, e.g. ".data.key".
	Fields []string
	Err    error
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("applying %s: fields %s are owned by field manager(s) %s (not forced)",
		e.Ref, strings.Join(e.Fields, ", "), strings.Join(quoteAll(e.Managers), ", "))
}

func (e *ConflictError) Unwrap() error { return e.Err }

// Apply makes the live objects match desired with server-side apply, writing only objects that
// are missing, changed or drifted (see the package documentation), then deletes the objects of
// previous that are not desired any more.
//
// It works in two phases. First it reads every desired object and decides what needs a write;
// a set that needs none returns here, having made no write and no SelfSubjectAccessReview. If
// something must be written or pruned, it checks with SelfSubjectAccessReviews that the
// client's user may do all of it (patch, create for objects that do not exist, delete for
// pruning) and, if any permission is denied, returns a *ForbiddenError (errors.Is ErrForbidden)
// and an empty Result without writing or deleting anything: a set is not half-applied for want
// of permissions. Otherwise it writes and prunes; a failure of one object does not stop the
// others, it is recorded in Result.Failed. The error is only for failures of the whole call.
func (a *Applier) Apply(ctx context.Context, desired []*unstructured.Unstructured, previous []Ref) (Result, error) {
	if a.Client == nil || a.FieldManager == "" {
		return Result{}, errors.New("applying objects: the Applier needs a Client and a FieldManager")
	}
	res := Result{Failed: map[Ref]error{}}
	desiredKeys := map[Ref]bool{}
	inPrevious := map[Ref]bool{}
	for _, p := range previous {
		inPrevious[p.Key()] = true
	}
	crds := definedByCRDs(desired)

	// Read and decide. The reads are independent, so they go out side by side: a release or an
	// addon set is read in the time of a few round trips instead of one per object, which is
	// what a converged re-check costs.
	refs := make([]Ref, len(desired))
	twice := make([]bool, len(desired))
	others := make([]bool, len(desired))
	for i, d := range desired {
		refs[i] = RefOf(d)
		if desiredKeys[refs[i].Key()] {
			twice[i] = true
			continue
		}
		desiredKeys[refs[i].Key()] = true
		others[i] = a.WrittenByOther != nil && a.WrittenByOther(refs[i])
	}
	decisions := make([]struct {
		p   *pending
		err error
	}, len(desired))
	inParallel(len(desired), func(i int) {
		if !twice[i] && !others[i] {
			decisions[i].p, decisions[i].err = a.decide(ctx, desired[i], refs[i], crds)
		}
	})
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("applying objects: %w", err)
	}

	var writes []*pending
	var needed, denied []Permission
	for i := range desired {
		ref := refs[i]
		if twice[i] {
			res.Failed[ref] = fmt.Errorf("applying %s: rendered twice", ref)
			continue
		}
		res.Applied = append(res.Applied, ref)
		if others[i] {
			res.Deferred = append(res.Deferred, ref)
			continue
		}
		p, err := decisions[i].p, decisions[i].err
		if err != nil {
			res.Failed[ref] = err
			continue
		}
		if p.out == unchanged {
			continue
		}
		verbs := []string{"patch"}
		if p.out == created {
			verbs = append(verbs, "create")
		}
		perms, err := a.permissionsFor(ref, verbs, crds)
		if err != nil {
			res.Failed[ref] = fmt.Errorf("applying %s: %w", ref, err)
			continue
		}
		if p.unreadable {
			// The API server refused the read itself: that is part of what to grant.
			denied = append(denied, Permission{Group: perms[0].Group, Resource: perms[0].Resource, Namespace: perms[0].Namespace, Verb: "get", Kind: ref.Kind})
		}
		needed = append(needed, perms...)
		writes = append(writes, p)
	}

	// Prune in reverse order of the previous inventory: dependants before what they depend on
	// (custom resources before their CRDs, objects before their Namespace).
	type prune struct {
		ref           Ref
		keep, release bool
	}
	var prunes []prune
	seen := map[Ref]bool{}
	for i := len(previous) - 1; i >= 0; i-- {
		p := previous[i]
		if desiredKeys[p.Key()] || seen[p.Key()] {
			continue
		}
		seen[p.Key()] = true
		keep := a.KeepOnPrune != nil && a.KeepOnPrune(p)
		release := !keep && a.HeldByOther != nil && a.HeldByOther(p)
		prunes = append(prunes, prune{ref: p, keep: keep, release: release})
		if keep || release {
			continue
		}
		perms, err := a.permissionsFor(p, []string{"delete"}, nil)
		if meta.IsNoMatchError(err) {
			continue // the kind is not served any more: there is nothing to delete
		}
		if err != nil {
			return Result{}, fmt.Errorf("pruning %s: %w", p, err)
		}
		needed = append(needed, perms...)
	}

	if len(needed) > 0 || len(denied) > 0 {
		if err := a.authorize(ctx, needed, denied); err != nil {
			return Result{}, fmt.Errorf("applying objects: %w", err)
		}
	}

	// Write, in render order, except that consecutive ordinary objects go out side by side (see
	// writeAll).
	outs, errs := a.writeAll(ctx, writes)
	for i, p := range writes {
		out, err := outs[i], errs[i]
		if err != nil {
			res.Failed[p.ref] = err
			continue
		}
		if out != unchanged {
			res.Changed = append(res.Changed, p.ref)
		}
		if out == driftRepaired || (out == created && inPrevious[p.ref.Key()]) {
			res.Drifted = append(res.Drifted, p.ref)
		}
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("applying objects: %w", err)
	}
	for _, p := range prunes {
		if p.keep {
			res.Applied = append(res.Applied, p.ref)
			continue
		}
		if p.release {
			res.Released = append(res.Released, p.ref)
			continue
		}
		if _, err := a.deleteOne(ctx, p.ref); err != nil {
			res.Failed[p.ref] = fmt.Errorf("pruning %s: %w", p.ref, err)
			res.Applied = append(res.Applied, p.ref)
			continue
		}
		res.Pruned = append(res.Pruned, p.ref)
	}
	return res, nil
}

// outcome says what applying one object does.
type outcome int

const (
	unchanged     outcome = iota // nothing written: the live object matches
	created                      // the object did not exist
	updated                      // the rendered content changed
	driftRepaired                // the rendered content is unchanged but the live object drifted
)

// pending is the decision about one desired object.
type pending struct {
	ref Ref
	obj *unstructured.Unstructured // prepared: server fields dropped, hash annotation set
	out outcome
	// deferred: the kind is defined by a CRD of the same call and not served yet, so the object
	// was not read; it is read again once the CRD is established.
	deferred bool
	// unreadable: the API server refused to let us read the object.
	unreadable bool
}

// decide reads the live object of d and decides whether it needs a write, writing nothing.
func (a *Applier) decide(ctx context.Context, d *unstructured.Unstructured, ref Ref, crds map[schema.GroupVersionKind]crdResource) (*pending, error) {
	obj, hash, err := prepare(d)
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", ref, err)
	}
	p := &pending{ref: ref, obj: obj}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(obj.GroupVersionKind())
	err = a.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, live)
	switch {
	case apierrors.IsNotFound(err):
		p.out = created
		return p, nil
	case meta.IsNoMatchError(err):
		if _, ok := crds[ref.GroupVersionKind()]; ok {
			p.out, p.deferred = created, true
			return p, nil
		}
		return nil, fmt.Errorf("applying %s: %w", ref, &MissingKindsError{Kinds: []schema.GroupVersionKind{ref.GroupVersionKind()}})
	case apierrors.IsForbidden(err):
		// Whether it exists is unknown: it needs whatever a create needs.
		p.out, p.unreadable = created, true
		return p, nil
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	p.out = updated
	if live.GetAnnotations()[HashAnnotation] == hash {
		if !drifted(obj.Object, live.Object, a.owned(live)) {
			p.out = unchanged
			return p, nil
		}
		p.out = driftRepaired
	}
	return p, nil
}

// writeAll writes every pending object and returns the outcome and error of each, by index.
//
// Render order is kept where it matters and nowhere else. Objects that others depend on being
// there first are barriers, written alone and in order: CRDs (their kind must be served before
// its objects are applied), Namespaces (before what lives in them), and admission webhook
// configurations and APIServices (written once what they intercept or serve is in place, as
// Helm's install order puts them last, so a webhook with failurePolicy Fail cannot refuse its own
// chart's objects). Runs of ordinary objects between barriers do not depend on each other and are
// written side by side, parallelRequests at a time: a release's ClusterClass and its templates, or
// an addon's dozen objects, then cost a few round trips instead of one per object.
func (a *Applier) writeAll(ctx context.Context, writes []*pending) ([]outcome, []error) {
	outs := make([]outcome, len(writes))
	errs := make([]error, len(writes))
	writeOne := func(i int) {
		if err := ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("applying %s: %w", writes[i].ref, err)
			return
		}
		outs[i], errs[i] = a.write(ctx, writes[i])
	}
	var run []int // ordinary objects since the last barrier
	flush := func() {
		inParallel(len(run), func(j int) { writeOne(run[j]) })
		run = run[:0]
	}
	for i, p := range writes {
		if !isBarrier(p.ref) {
			run = append(run, i)
			continue
		}
		flush()
		writeOne(i)
	}
	flush()
	return outs, errs
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

// isBarrier reports whether writes before and after r must stay on their side of it (see
// writeAll).
func isBarrier(r Ref) bool {
	switch {
	case isCRD(r):
		return true
	case r.Group == "" && r.Kind == "Namespace":
		return true
	case r.Group == "admissionregistration.k8s.io":
		return true
	case r.Group == "apiregistration.k8s.io" && r.Kind == "APIService":
		return true
	}
	return false
}

// write applies a pending object.
func (a *Applier) write(ctx context.Context, p *pending) (outcome, error) {
	ref, out := p.ref, p.out
	if p.deferred {
		// Its CRD was applied earlier in this call: now it can be read.
		again, err := a.decide(ctx, p.obj, ref, nil)
		if err != nil {
			return unchanged, err
		}
		if again.out == unchanged {
			return unchanged, nil
		}
		out = again.out
	}
	if err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(p.obj), client.FieldOwner(a.FieldManager)); err != nil {
		if apierrors.IsConflict(err) {
			return unchanged, conflictError(ref, err)
		}
		if meta.IsNoMatchError(err) {
			return unchanged, fmt.Errorf("applying %s: %w", ref, &MissingKindsError{Kinds: []schema.GroupVersionKind{ref.GroupVersionKind()}})
		}
		return unchanged, fmt.Errorf("applying %s: %w", ref, err)
	}
	if isCRD(ref) {
		if err := a.waitEstablished(ctx, ref.Name); err != nil {
			return out, fmt.Errorf("applying %s: %w", ref, err)
		}
	}
	return out, nil
}

func isCRD(r Ref) bool {
	return r.Group == "apiextensions.k8s.io" && r.Kind == "CustomResourceDefinition"
}

// waitEstablished waits until the CRD is served, so that objects of its kind later in the same
// Apply do not fail with "no matches for kind".
func (a *Applier) waitEstablished(ctx context.Context, name string) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, crdEstablishTimeout, true, func(ctx context.Context) (bool, error) {
		crd := &unstructured.Unstructured{}
		crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
		if err := a.Client.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the CRD to be established: %w", err)
	}
	return nil
}

var conflictManager = regexp.MustCompile(`conflict with "([^"]*)"`)

func conflictError(ref Ref, err error) error {
	ce := &ConflictError{Ref: ref, Err: err}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil {
		managers := map[string]bool{}
		for _, c := range status.Status().Details.Causes {
			if c.Type != metav1.CauseTypeFieldManagerConflict {
				continue
			}
			ce.Fields = append(ce.Fields, c.Field)
			if m := conflictManager.FindStringSubmatch(c.Message); m != nil && !managers[m[1]] {
				managers[m[1]] = true
				ce.Managers = append(ce.Managers, m[1])
			}
		}
	}
	if len(ce.Managers) == 0 { // no structured causes: take the names from the message
		for _, m := range conflictManager.FindAllStringSubmatch(err.Error(), -1) {
			ce.Managers = append(ce.Managers, m[1])
		}
	}
	sort.Strings(ce.Managers)
	return ce
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// prepare returns the object to apply, without the fields the server manages (a chart may carry
// creationTimestamp: null or a status, which would otherwise never compare equal), with
// HashAnnotation set to the hash of that content.
func prepare(d *unstructured.Unstructured) (*unstructured.Unstructured, string, error) {
	obj := d.DeepCopy()
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"} {
		unstructured.RemoveNestedField(obj.Object, "metadata", f)
	}
	delete(obj.Object, "status")
	if ann := obj.GetAnnotations(); ann != nil {
		delete(ann, HashAnnotation)
		if len(ann) == 0 {
			unstructured.RemoveNestedField(obj.Object, "metadata", "annotations")
		} else {
			obj.SetAnnotations(ann)
		}
	}
	// encoding/json sorts map keys, so the hash is stable.
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, "", fmt.Errorf("hashing: %w", err)
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:16])
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[HashAnnotation] = hash
	obj.SetAnnotations(ann)
	return obj, hash, nil
}

// owned returns the union of the field sets (the fieldsV1 trees) that our field manager applied
// to the main resource of live; nil when it owns nothing.
func (a *Applier) owned(live *unstructured.Unstructured) map[string]any {
	var tree map[string]any
	for _, e := range live.GetManagedFields() {
		if e.Manager != a.FieldManager || e.Operation != metav1.ManagedFieldsOperationApply || e.Subresource != "" || e.FieldsV1 == nil {
			continue
		}
		var t map[string]any
		if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &t); err != nil {
			continue
		}
		tree = mergeTrees(tree, t)
	}
	return tree
}

func mergeTrees(a, b map[string]any) map[string]any {
	if a == nil {
		return b
	}
	for k, bv := range b {
		av, ok := a[k].(map[string]any)
		bm, _ := bv.(map[string]any)
		if ok {
			a[k] = mergeTrees(av, bm)
		} else {
			a[k] = bm
		}
	}
	return a
}

// drifted reports whether a field of desired differs from live and is not owned by us (owned is
// our fieldsV1 subtree for this level, nil when we own nothing here).
func drifted(desired, live map[string]any, owned map[string]any) bool {
	for k, dv := range desired {
		if isEmpty(dv) {
			// The server drops empty and null values; they carry no intent to compare.
			continue
		}
		lv, inLive := live[k]
		childOwned, isOwned := ownedChild(owned, "f:"+k)
		switch dv := dv.(type) {
		case map[string]any:
			lm, ok := lv.(map[string]any)
			if !inLive || !ok {
				if !isOwned {
					return true
				}
				continue
			}
			if drifted(dv, lm, childOwned) {
				return true
			}
		case []any:
			ll, _ := lv.([]any)
			if equalJSON(dv, ll) {
				continue
			}
			if !isOwned || listDrifted(dv, ll, childOwned) {
				return true
			}
		default:
			if equalJSON(dv, lv) {
				continue
			}
			if !isOwned {
				return true
			}
		}
	}
	return false
}

// listDrifted compares a list that differs from live and whose field we own. An atomic list is
// owned as a whole, so owning it means the difference is normalisation. A granular list records
// one entry per item we applied ("k:{keys}" for maps with keys, "v:value" for sets, "i:index"):
// fewer entries than items means someone took or removed items; for keyed items the comparison
// goes on inside the item.
func listDrifted(desired, live []any, owned map[string]any) bool {
	var items []string
	for k := range owned {
		if strings.HasPrefix(k, "k:") || strings.HasPrefix(k, "v:") || strings.HasPrefix(k, "i:") {
			items = append(items, k)
		}
	}
	if len(items) == 0 {
		return false // atomic
	}
	nonEmpty := 0
	for _, d := range desired {
		if !isEmpty(d) {
			nonEmpty++
		}
	}
	if len(items) < nonEmpty {
		return true
	}
	for _, k := range items {
		if !strings.HasPrefix(k, "k:") {
			continue
		}
		var keyFields map[string]any
		if err := json.Unmarshal([]byte(strings.TrimPrefix(k, "k:")), &keyFields); err != nil {
			continue
		}
		d := findItem(desired, keyFields)
		if d == nil {
			continue // an item we applied before; desired unchanged by hash, so it is normalisation
		}
		l := findItem(live, keyFields)
		if l == nil {
			return true
		}
		sub, _ := owned[k].(map[string]any)
		if drifted(d, l, sub) {
			return true
		}
	}
	return false
}

func findItem(list []any, keyFields map[string]any) map[string]any {
	for _, it := range list {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		match := true
		for kf, kv := range keyFields {
			if !equalJSON(m[kf], kv) {
				match = false
				break
			}
		}
		if match {
			return m
		}
	}
	return nil
}

func ownedChild(owned map[string]any, key string) (map[string]any, bool) {
	if owned == nil {
		return nil, false
	}
	v, ok := owned[key]
	if !ok {
		return nil, false
	}
	m, _ := v.(map[string]any)
	return m, true
}

func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	default:
		return false
	}
}

// equalJSON compares two unstructured values after normalising numbers, which arrive as int64,
// float64 or json.Number depending on the decoder.
func equalJSON(a, b any) bool {
	return reflect.DeepEqual(normalize(a), normalize(b))
}

func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = normalize(e)
		}
		return out
	case int:
		return float64(t)
	case int32:
		return float64(t)
	case int64:
		return float64(t)
	case float32:
		return float64(t)
	case json.Number:
		f, err := t.Float64()
		if err != nil {
			return t.String()
		}
		return f
	default:
		return v
	}
}
