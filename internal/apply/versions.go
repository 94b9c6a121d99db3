package apply

import (
	"context"
	"errors"
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Versions returns, by Ref.Key, the resourceVersion of every live object of refs that carries the
// Applier's InventoryLabel, with one metadata-only list per kind (the objects' content is not
// read). An object that is missing, or lost the label, is not in the answer.
//
// It is the cheap half of a drift check: every write to an object, by anyone, changes its
// resourceVersion, so when Versions equals Result.Versions of an Apply that read (and found
// unchanged) or wrote every object, nothing changed since, and that Apply would decide the same
// again.
// Anything else (a changed version, a missing object) means: Apply to find out.
func (a *Applier) Versions(ctx context.Context, refs []Ref) (map[Ref]string, error) {
	if a.Client == nil || a.Inventory == "" {
		return nil, errors.New("listing versions: the Applier needs a Client and an Inventory")
	}
	var kinds []schema.GroupVersionKind
	seen := map[schema.GroupKind]bool{}
	for _, r := range refs {
		gvk := r.GroupVersionKind()
		if !seen[gvk.GroupKind()] {
			seen[gvk.GroupKind()] = true
			kinds = append(kinds, gvk)
		}
	}
	var mu sync.Mutex
	out := map[Ref]string{}
	errs := make([]error, len(kinds))
	inParallel(len(kinds), func(i int) {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(kinds[i].GroupVersion().WithKind(kinds[i].Kind + "List"))
		if err := a.Client.List(ctx, list, client.MatchingLabels{InventoryLabel: a.Inventory}); err != nil {
			errs[i] = fmt.Errorf("listing %s of inventory %s: %w", gvkString(kinds[i]), a.Inventory, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, o := range list.Items {
			ref := Ref{Group: kinds[i].Group, Kind: kinds[i].Kind, Namespace: o.Namespace, Name: o.Name}
			out[ref] = o.ResourceVersion
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
