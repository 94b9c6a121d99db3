package apply

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Delete deletes every object of inventory, in reverse order (dependants first), and returns the
// objects still present afterwards: being finalized, or failed to delete (those errors are
// joined in err). "Not found", and a kind that is no longer served, count as deleted. Objects
// that HeldByOther names are not deleted and not returned: they are another applier's now.
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
		if a.HeldByOther != nil && a.HeldByOther(ref) {
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

// Preflight checks, before anything is written, that the API server serves every kind of desired,
// counting kinds defined by CustomResourceDefinitions among desired as served. It returns a
// *MissingKindsError naming every missing group/version/kind, so that a caller can apply
// all-or-nothing with respect to missing CRDs.
func (a *Applier) Preflight(ctx context.Context, desired []*unstructured.Unstructured) error {
	if a.Client == nil {
		return errors.New("checking kinds: the Applier needs a Client")
	}
	defined := definedByCRDs(desired)
	mapper := a.Client.RESTMapper()
	var missing []schema.GroupVersionKind
	seen := map[schema.GroupVersionKind]bool{}
	for _, d := range desired {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("checking kinds: %w", err)
		}
		gvk := d.GroupVersionKind()
		if _, ok := defined[gvk]; seen[gvk] || ok {
			continue
		}
		seen[gvk] = true
		if _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			if !meta.IsNoMatchError(err) {
				return fmt.Errorf("checking kind %s: %w", gvkString(gvk), err)
			}
			missing = append(missing, gvk)
		}
	}
	if len(missing) > 0 {
		return &MissingKindsError{Kinds: missing}
	}
	return nil
}
