package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// decision is what one Apply call does, decided before any of it is done.
type decision struct {
	// res is the result so far: the new inventory of the desired objects, the deferred ones, and
	// the failures of objects that will not be written.
	res Result
	// writes are the desired objects that need a write, in render order.
	writes []*pending
	// prunes are the objects of the previous inventory that are not desired any more, dependants
	// first.
	prunes []prune
	// inPrevious holds the keys of the previous inventory: an object of it that must be created
	// again was deleted by someone else, which is drift.
	inPrevious map[Ref]bool
}

// prune is the decision about one object of the previous inventory that is not desired any more.
type prune struct {
	ref Ref
	// keep: protected (WithKeepOnPrune); it stays in the inventory and is not deleted.
	keep bool
	// release: another applier holds it (WithSharing); it leaves the inventory and is not deleted.
	release bool
}

// candidate is one desired object on its way to a decision.
type candidate struct {
	obj *unstructured.Unstructured
	ref Ref
	// twice: an earlier desired object has the same key, so this one is an error, not a write.
	twice bool
	// byOther: another applier writes it; it is recorded, not read.
	byOther bool
	// p and err are the decision about an object that is read.
	p   *pending
	err error
}

// decide reads every desired object and decides what to write, what to leave alone and what to
// prune, writing nothing.
func (a *Applier) decide(ctx context.Context, desired []*unstructured.Unstructured, previous []Ref, crds map[schema.GroupVersionKind]crdResource) (*decision, error) {
	cands, desiredKeys := a.candidates(desired)
	a.readAll(ctx, cands, crds)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("applying objects: %w", err)
	}
	d := &decision{res: Result{Failed: map[Ref]error{}}, inPrevious: map[Ref]bool{}}
	for _, p := range previous {
		d.inPrevious[p.Key()] = true
	}
	d.collect(cands)
	d.prunes = a.prunesOf(previous, desiredKeys)
	return d, nil
}

// candidates names the desired objects and marks those that are not read: a second object with
// the key of an earlier one, and objects another applier writes. It returns the desired keys too.
func (a *Applier) candidates(desired []*unstructured.Unstructured) ([]candidate, map[Ref]bool) {
	cands := make([]candidate, len(desired))
	keys := map[Ref]bool{}
	for i, o := range desired {
		c := &cands[i]
		c.obj, c.ref = o, RefOf(o)
		if keys[c.ref.Key()] {
			c.twice = true
			continue
		}
		keys[c.ref.Key()] = true
		c.byOther = a.writtenByOther != nil && a.writtenByOther(c.ref)
	}
	return cands, keys
}

// readAll decides about every candidate that is read. The reads are independent, so they go out
// side by side: a release or an addon set is read in the time of a few round trips instead of one
// per object, which is what a converged re-check costs.
func (a *Applier) readAll(ctx context.Context, cands []candidate, crds map[schema.GroupVersionKind]crdResource) {
	inParallel(len(cands), func(i int) {
		if c := &cands[i]; !c.twice && !c.byOther {
			c.p, c.err = a.decideObject(ctx, c.obj, c.ref, crds)
		}
	})
}

// collect records the candidates in the result, in render order, and keeps those that need a
// write.
func (d *decision) collect(cands []candidate) {
	for _, c := range cands {
		if c.twice {
			d.res.Failed[c.ref] = fmt.Errorf("applying %s: rendered twice", c.ref)
			continue
		}
		d.res.Applied = append(d.res.Applied, c.ref)
		switch {
		case c.byOther:
			d.res.Deferred = append(d.res.Deferred, c.ref)
		case c.err != nil:
			d.res.Failed[c.ref] = c.err
		case c.p.out != unchanged:
			d.writes = append(d.writes, c.p)
		case c.p.version != "":
			if d.res.Versions == nil {
				d.res.Versions = map[Ref]string{}
			}
			d.res.Versions[c.ref.Key()] = c.p.version
		}
	}
}

// prunesOf decides about the objects of previous that are not desired any more, in reverse order
// of previous: dependants before what they depend on (custom resources before their CRDs,
// objects before their Namespace).
func (a *Applier) prunesOf(previous []Ref, desiredKeys map[Ref]bool) []prune {
	var prunes []prune
	seen := map[Ref]bool{}
	for i := len(previous) - 1; i >= 0; i-- {
		p := previous[i]
		if desiredKeys[p.Key()] || seen[p.Key()] {
			continue
		}
		seen[p.Key()] = true
		keep := a.keepOnPrune != nil && a.keepOnPrune(p)
		release := !keep && a.heldByOther != nil && a.heldByOther(p)
		prunes = append(prunes, prune{ref: p, keep: keep, release: release})
	}
	return prunes
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
	// version is the resourceVersion of a live object read and found unchanged, or of the write
	// that left it so (TrustOwnWrites).
	version string
}

// decideObject reads the live object of d and decides whether it needs a write, writing nothing.
func (a *Applier) decideObject(ctx context.Context, d *unstructured.Unstructured, ref Ref, crds map[schema.GroupVersionKind]crdResource) (*pending, error) {
	obj, hash, err := prepare(d, a.Inventory)
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", ref, err)
	}
	p := &pending{ref: ref, obj: obj}
	if a.TrustOwnWrites {
		if version, ok := a.access().wroteSame(ref, hash); ok {
			p.out, p.version = unchanged, version
			return p, nil
		}
	}
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
			p.out, p.version = unchanged, live.GetResourceVersion()
			return p, nil
		}
		p.out = driftRepaired
	}
	return p, nil
}

// prepare returns the object to apply, without the fields the server manages (a chart may carry
// creationTimestamp: null or a status, which would otherwise never compare equal), with
// InventoryLabel set to inventory (unless empty), and HashAnnotation set to the hash of that
// content.
func prepare(d *unstructured.Unstructured, inventory string) (*unstructured.Unstructured, string, error) {
	obj := d.DeepCopy()
	if inventory != "" {
		labels := obj.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[InventoryLabel] = inventory
		obj.SetLabels(labels)
	}
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
