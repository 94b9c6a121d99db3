package reconciler

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// writer is the default writer of what a reconcile changed: at most two requests, the metadata
// and spec first, then the whole status in one merge patch.
//
// It replaces Cluster API's patch helper, which writes the conditions in a request of their own
// (to merge them with conditions other controllers own, retrying on conflicts). Every status
// change that moved a condition and another status field (Ready with status.ready) cost two
// writes, one after the other, and whoever watched saw the half-written state between them: a
// release read its provider object with the Ready condition True and status.ready still false.
// The skeleton owns every condition type of its kinds (kstatus.DropForeign removes the others
// before each write), so there is nothing of another controller to merge.
type writer[T Object] struct {
	kind   string
	client client.Client
	// base is the object as this reconcile last read or wrote it, unstructured.
	base map[string]any
}

func (w *writer[T]) start(obj T) error {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("starting the patch of %s: %w", w.kind, err)
	}
	w.base = u
	return nil
}

// patch writes the difference between base and obj, recording observedGeneration when observed.
// Both patches are computed before either is sent: the answer to the first replaces obj with what
// the API server holds, its old status included.
func (w *writer[T]) patch(ctx context.Context, obj T, observed bool) error {
	after, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("patching %s: %w", w.kind, err)
	}
	if observed {
		if err := unstructured.SetNestedField(after, obj.GetGeneration(), "status", "observedGeneration"); err != nil {
			return fmt.Errorf("patching %s: %w", w.kind, err)
		}
	}
	mainPatch, err := mergePatch(withoutStatus(w.base), withoutStatus(after))
	if err != nil {
		return fmt.Errorf("computing the patch of %s: %w", w.kind, err)
	}
	statusPatch, err := mergePatch(onlyStatus(w.base), onlyStatus(after))
	if err != nil {
		return fmt.Errorf("computing the status patch of %s: %w", w.kind, err)
	}
	var errs []error
	if mainPatch != nil {
		if err := w.client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, mainPatch)); err != nil {
			errs = append(errs, fmt.Errorf("patching %s: %w", w.kind, err))
		}
	}
	if statusPatch != nil {
		if err := w.client.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, statusPatch)); err != nil {
			errs = append(errs, fmt.Errorf("patching the status of %s: %w", w.kind, err))
		}
	}
	return errors.Join(errs...)
}

// mergePatch is the JSON merge patch from before to after, nil when they are the same.
func mergePatch(before, after map[string]any) ([]byte, error) {
	data, err := client.MergeFrom(&unstructured.Unstructured{Object: before}).Data(&unstructured.Unstructured{Object: after})
	if err != nil || bytes.Equal(data, []byte("{}")) {
		return nil, err
	}
	return data, nil
}

func withoutStatus(u map[string]any) map[string]any {
	out := make(map[string]any, len(u))
	for k, v := range u {
		if k != "status" {
			out[k] = v
		}
	}
	return out
}

func onlyStatus(u map[string]any) map[string]any {
	if s, ok := u["status"]; ok {
		return map[string]any{"status": s}
	}
	return map[string]any{}
}
