package apply

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// pruneDecided deletes the objects of the previous inventory that d decided to prune and records
// each in d.res: a kept one stays in the inventory, a released one leaves it without being
// deleted, and one that fails to delete stays in it so that the next Apply tries again.
func (a *Applier) pruneDecided(ctx context.Context, d *decision) {
	for _, p := range d.prunes {
		switch {
		case p.keep:
			d.res.Applied = append(d.res.Applied, p.ref)
		case p.release:
			d.res.Released = append(d.res.Released, p.ref)
		default:
			if _, err := a.deleteOne(ctx, p.ref); err != nil {
				d.res.Failed[p.ref] = fmt.Errorf("pruning %s: %w", p.ref, err)
				d.res.Applied = append(d.res.Applied, p.ref)
			} else {
				d.res.Pruned = append(d.res.Pruned, p.ref)
			}
		}
	}
}

// Delete deletes every object of inventory, in reverse order (dependants first), and returns the
// objects still present afterwards: being finalized, or failed to delete (those errors are
// joined in err). "Not found", and a kind that is no longer served, count as deleted. Objects
// that another applier holds (WithSharing) are not deleted and not returned: they are its now.
func (a *Applier) Delete(ctx context.Context, inventory []Ref) (remaining []Ref, err error) {
	if a.Client == nil {
		return nil, errors.New("deleting objects: the Applier needs a Client")
	}
	present, done := map[Ref]bool{}, map[Ref]bool{}
	var errs []error
	for i := len(inventory) - 1; i >= 0; i-- {
		ref := inventory[i]
		if present[ref.Key()] || done[ref.Key()] {
			continue
		}
		if a.heldByOther != nil && a.heldByOther(ref) {
			done[ref.Key()] = true
			continue
		}
		gone, err := a.deleteOne(ctx, ref)
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting %s: %w", ref, err))
		}
		if !gone {
			present[ref.Key()] = true
		}
	}
	seen := map[Ref]bool{}
	for _, ref := range inventory {
		if present[ref.Key()] && !seen[ref.Key()] {
			seen[ref.Key()] = true
			remaining = append(remaining, ref)
		}
	}
	return remaining, errors.Join(errs...)
}

// deleteOne deletes ref and reports whether it is gone now.
func (a *Applier) deleteOne(ctx context.Context, ref Ref) (bool, error) {
	if a.TrustOwnWrites {
		a.access().forget(ref) // a later Apply of it creates it again
	}
	obj := ref.object()
	err := a.Client.Delete(ctx, obj, client.PropagationPolicy("Background"))
	switch {
	case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
		return true, nil
	case err != nil:
		return false, err
	}
	// Objects with finalizers stay until their controllers finish; read back to tell.
	live := ref.object()
	err = a.Client.Get(ctx, client.ObjectKeyFromObject(obj), live)
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading after delete: %w", err)
	}
	return false, nil
}
