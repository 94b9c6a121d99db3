package condition

import (
	"context"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func compiled(t *testing.T, c *Condition) *Condition {
	t.Helper()
	if err := c.Compile(); err != nil {
		t.Fatalf("Compile %q: %v", c.Conditions, err)
	}
	return c
}

// objects is a minimal client.Reader over a map, enough to evaluate conditions without an API
// server; the integration tests evaluate the same conditions against a real one.
type objects struct {
	items map[string]map[string]any
	err   error
}

func (o objects) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	if o.err != nil {
		return o.err
	}
	u := obj.(*unstructured.Unstructured)
	item, ok := o.items[u.GetKind()+"/"+key.Namespace+"/"+key.Name]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: u.GetKind()}, key.Name)
	}
	u.Object = item
	return nil
}

func (o objects) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

func TestEvaluate(t *testing.T) {
	post := compiled(t, &Condition{
		Objects:    []Object{{Key: "cm", APIVersion: "v1", Kind: "ConfigMap", Name: "fixture-cni", Namespace: "kube-system"}},
		Conditions: `cm.data.mtu == "1400"`,
	})
	pre := compiled(t, &Condition{
		Objects:    []Object{{Key: "ds", APIVersion: "apps/v1", Kind: "DaemonSet", Name: "cni", Namespace: "kube-system"}},
		Conditions: "ds.status.numberReady >= 1",
	})
	cm := func(mtu string) map[string]any {
		return map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]any{"mtu": mtu}}
	}
	for name, tc := range map[string]struct {
		cond    *Condition
		items   map[string]map[string]any
		readErr error
		met     bool
		reason  string
		wantErr bool
	}{
		"missing object is not yet": {cond: post, met: false, reason: "to exist"},
		"false":                     {cond: post, items: map[string]map[string]any{"ConfigMap/kube-system/fixture-cni": cm("1450")}, reason: "is false"},
		"true":                      {cond: post, items: map[string]map[string]any{"ConfigMap/kube-system/fixture-cni": cm("1400")}, met: true},
		"missing field is not yet":  {cond: pre, items: map[string]map[string]any{"DaemonSet/kube-system/cni": {"kind": "DaemonSet"}}, reason: "cannot be evaluated yet"},
		"int field":                 {cond: pre, items: map[string]map[string]any{"DaemonSet/kube-system/cni": {"status": map[string]any{"numberReady": int64(2)}}}, met: true},
		"nil condition holds":       {cond: nil, met: true},
		"read error is an error":    {cond: post, readErr: errors.New("connection refused"), wantErr: true},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := tc.cond.Evaluate(context.Background(), objects{items: tc.items, err: tc.readErr})
			if (err != nil) != tc.wantErr {
				t.Fatalf("Evaluate error: %v, want error %v", err, tc.wantErr)
			}
			if res.Met != tc.met || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("Evaluate = %+v, want met %v and a reason with %q", res, tc.met, tc.reason)
			}
		})
	}
}
