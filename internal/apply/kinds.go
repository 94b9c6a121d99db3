package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ErrKindNotServed is matched (errors.Is) by a *MissingKindsError.
var ErrKindNotServed = errors.New("kind not served by the API server")

// MissingKindsError names the kinds the API server does not serve (typically: a CRD is not
// installed). It is the one error for a missing kind, whether SetDefaultNamespace, Preflight or
// Apply finds it, so that a caller checks for one type.
type MissingKindsError struct {
	Kinds []schema.GroupVersionKind
}

func (e *MissingKindsError) Error() string {
	names := make([]string, len(e.Kinds))
	for i, k := range e.Kinds {
		names[i] = gvkString(k)
	}
	return fmt.Sprintf("kinds not served by the API server (CRD not installed?): %s", strings.Join(names, ", "))
}

// Is makes errors.Is(err, ErrKindNotServed) true.
func (e *MissingKindsError) Is(target error) bool { return target == ErrKindNotServed }

// gvkString formats a GroupVersionKind as "Kind.version.group" ("Kind.v1" for the core group),
// the form kubectl users recognise.
func gvkString(k schema.GroupVersionKind) string {
	if k.Group == "" {
		return k.Kind + "." + k.Version
	}
	return k.Kind + "." + k.Version + "." + k.Group
}

// SetDefaultNamespace sets namespace on every object that has none and whose kind is namespaced,
// according to mapper or to a CustomResourceDefinition among objs (so that a chart's own CRDs and
// their objects work before the CRDs are installed). It clears nothing: an explicit namespace
// stays, and so does one on a cluster-scoped object (the API server rejects it, which is the
// chart's bug to report). Objects of unknown kinds are left alone and reported together in one
// *MissingKindsError.
//
// It belongs to applying, not rendering: the scope of a kind is a fact of the cluster the objects
// go to (its discovery), and rendering stays a pure function of the chart and its values.
func SetDefaultNamespace(objs []*unstructured.Unstructured, namespace string, mapper meta.RESTMapper) error {
	crdScope := map[schema.GroupKind]bool{} // true = namespaced
	for _, o := range objs {
		if !isCRD(RefOf(o)) {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		crdScope[schema.GroupKind{Group: group, Kind: kind}] = scope == "Namespaced"
	}
	var unknown []schema.GroupVersionKind
	seen := map[schema.GroupVersionKind]bool{}
	for _, o := range objs {
		if o.GetNamespace() != "" {
			continue
		}
		gvk := o.GroupVersionKind()
		namespaced, ok := crdScope[gvk.GroupKind()]
		if !ok {
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				if !meta.IsNoMatchError(err) {
					return fmt.Errorf("finding the scope of %s: %w", gvkString(gvk), err)
				}
				if !seen[gvk] {
					seen[gvk] = true
					unknown = append(unknown, gvk)
				}
				continue
			}
			namespaced = m.Scope.Name() == meta.RESTScopeNameNamespace
		}
		if namespaced {
			o.SetNamespace(namespace)
		}
	}
	if len(unknown) > 0 {
		return &MissingKindsError{Kinds: unknown}
	}
	return nil
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

func isCRD(r Ref) bool {
	return r.Group == "apiextensions.k8s.io" && r.Kind == "CustomResourceDefinition"
}

// crdResource is the resource of a kind defined by a CRD among the desired objects.
type crdResource struct {
	resource   string
	namespaced bool
}

// definedByCRDs returns the kinds that CRDs among desired define, with their resources.
func definedByCRDs(desired []*unstructured.Unstructured) map[schema.GroupVersionKind]crdResource {
	var out map[schema.GroupVersionKind]crdResource
	for _, d := range desired {
		if !isCRD(RefOf(d)) {
			continue
		}
		group, _, _ := unstructured.NestedString(d.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(d.Object, "spec", "names", "kind")
		plural, _, _ := unstructured.NestedString(d.Object, "spec", "names", "plural")
		scope, _, _ := unstructured.NestedString(d.Object, "spec", "scope")
		versions, _, _ := unstructured.NestedSlice(d.Object, "spec", "versions")
		for _, v := range versions {
			if m, ok := v.(map[string]any); ok {
				name, _ := m["name"].(string)
				if out == nil {
					out = map[schema.GroupVersionKind]crdResource{}
				}
				out[schema.GroupVersionKind{Group: group, Version: name, Kind: kind}] = crdResource{resource: plural, namespaced: scope != "Cluster"}
			}
		}
	}
	return out
}
