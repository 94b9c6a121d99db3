package apply_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
)

func TestSetDefaultNamespace(t *testing.T) {
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, meta.RESTScopeRoot)
	mapper.Add(schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}, meta.RESTScopeRoot)
	mapper.Add(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}, meta.RESTScopeRoot)
	object := func(apiVersion, kind, ns, name string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(apiVersion)
		u.SetKind(kind)
		u.SetNamespace(ns)
		u.SetName(name)
		return u
	}
	widgetCRD := func() *unstructured.Unstructured {
		u := object("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.example.org")
		u.Object["spec"] = map[string]any{
			"group":    "example.org",
			"names":    map[string]any{"kind": "Widget", "plural": "widgets"},
			"scope":    "Namespaced",
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true}},
		}
		return u
	}
	widget := schema.GroupVersionKind{Group: "example.org", Version: "v1", Kind: "Widget"}
	for _, tc := range []struct {
		name    string
		objs    []*unstructured.Unstructured
		want    []string
		missing []schema.GroupVersionKind // nil: no error
	}{{
		name: "scope from the mapper; explicit namespaces kept; unknown kinds reported once",
		objs: []*unstructured.Unstructured{
			object("v1", "ConfigMap", "", "defaulted"),
			object("v1", "ConfigMap", "explicit", "kept"),
			object("rbac.authorization.k8s.io/v1", "ClusterRole", "", "cluster"),
			object("rbac.authorization.k8s.io/v1", "ClusterRole", "odd", "kept-as-is"),
			object("x.example.org/v2", "Gadget", "", "unknown1"),
			object("x.example.org/v2", "Gadget", "", "unknown2"),
			object("x.example.org/v2", "Gizmo", "has", "not-looked-up"),
		},
		want: []string{
			"ConfigMap/ns1/defaulted",
			"ConfigMap/explicit/kept",
			"ClusterRole//cluster",
			"ClusterRole/odd/kept-as-is",
			"Gadget//unknown1",
			"Gadget//unknown2",
			"Gizmo/has/not-looked-up",
		},
		missing: []schema.GroupVersionKind{{Group: "x.example.org", Version: "v2", Kind: "Gadget"}},
	}, {
		name: "scope from a CRD among the objects",
		objs: []*unstructured.Unstructured{
			widgetCRD(),
			object("v1", "Namespace", "", "rel-system"),
			object("rbac.authorization.k8s.io/v1", "ClusterRole", "", "rel-reader"),
			object("example.org/v1", "Widget", "", "rel-widget"),
			object("v1", "ConfigMap", "", "rel-hook"),
		},
		want: []string{
			"CustomResourceDefinition//widgets.example.org",
			"Namespace//rel-system",
			"ClusterRole//rel-reader",
			"Widget/ns1/rel-widget",
			"ConfigMap/ns1/rel-hook",
		},
	}, {
		name: "without the CRD the scope is unknown",
		objs: []*unstructured.Unstructured{
			object("example.org/v1", "Widget", "", "rel-widget"),
			object("v1", "ConfigMap", "", "rel-hook"),
		},
		want:    []string{"Widget//rel-widget", "ConfigMap/ns1/rel-hook"},
		missing: []schema.GroupVersionKind{widget},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			err := apply.SetDefaultNamespace(tc.objs, "ns1", mapper)
			var mk *apply.MissingKindsError
			switch {
			case tc.missing == nil && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.missing != nil && (!errors.As(err, &mk) || !errors.Is(err, apply.ErrKindNotServed)):
				t.Fatalf("error %v, want a *MissingKindsError", err)
			case tc.missing != nil:
				if diff := cmp.Diff(tc.missing, mk.Kinds); diff != "" {
					t.Errorf("missing kinds (-want +got):\n%s", diff)
				}
				for _, k := range tc.missing {
					name := k.Kind + "." + k.Version + "." + k.Group
					if !strings.Contains(err.Error(), name) {
						t.Errorf("error %q does not name the kind %s", err, name)
					}
				}
			}
			got := make([]string, len(tc.objs))
			for i, o := range tc.objs {
				got[i] = o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
}
