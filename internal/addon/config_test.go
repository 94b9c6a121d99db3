package addon

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const validConfig = `apiVersion: clusteraddonconfig.x-k8s.io/v1alpha1
clusterAddonVersion: clusteraddons.clusterstack.x-k8s.io/v1alpha1
addonStages:
  AfterControlPlaneInitialized:
    - name: cni
      action: apply
    - helmChartName: metrics-server
      action: apply
  BeforeClusterUpgrade:
    - name: cni
      action: apply
      waitForPostCondition:
        objects:
          - key: cm
            apiVersion: v1
            kind: ConfigMap
            name: fixture-cni
            namespace: kube-system
        conditions: cm.data.mtu == "1400"
    - name: metrics-server
      action: delete
      waitForPreCondition:
        objects:
          - key: ds
            apiVersion: apps/v1
            kind: DaemonSet
            name: cni
            namespace: kube-system
        conditions: ds.status.numberReady >= 1
`

func TestParse(t *testing.T) {
	c, err := Parse([]byte(validConfig))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var got []string
	for _, s := range c.Stages(HookBeforeClusterUpgrade) {
		got = append(got, s.Name+":"+string(s.Action))
	}
	if diff := cmp.Diff([]string{"cni:apply", "metrics-server:delete"}, got); diff != "" {
		t.Errorf("BeforeClusterUpgrade stages (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"cni", "metrics-server"}, c.SteadyCharts()); diff != "" {
		t.Errorf("SteadyCharts (-want +got):\n%s", diff)
	}
	if c.Stages(HookBeforeClusterUpgrade)[0].WaitForPostCondition == nil || c.Stages(HookBeforeClusterUpgrade)[1].WaitForPreCondition == nil {
		t.Errorf("conditions not parsed: %+v", c.Stages(HookBeforeClusterUpgrade))
	}
}

func TestSteadyChartsDropsDeleted(t *testing.T) {
	c, err := Parse([]byte(`addonStages:
  AfterControlPlaneInitialized:
    - {name: a, action: apply}
    - {name: b, action: apply}
    - {name: a, action: delete}
    - {name: c, action: apply}
`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"b", "c"}, c.SteadyCharts()); diff != "" {
		t.Errorf("SteadyCharts (-want +got):\n%s", diff)
	}
}

func TestParseRejects(t *testing.T) {
	cond := func(body string) string {
		return "addonStages:\n  BeforeClusterUpgrade:\n    - name: cni\n      action: apply\n      waitForPreCondition:\n" + body
	}
	for name, tc := range map[string]struct {
		yaml  string
		field string
	}{
		"empty":          {yaml: "", field: ""},
		"not yaml":       {yaml: "addonStages: [", field: ""},
		"no stages":      {yaml: "apiVersion: x\n", field: "addonStages"},
		"unknown hook":   {yaml: "addonStages:\n  AfterUpgrade:\n    - {name: cni, action: apply}\n", field: "addonStages.AfterUpgrade"},
		"no chart name":  {yaml: "addonStages:\n  BeforeClusterUpgrade:\n    - {action: apply}\n", field: "addonStages.BeforeClusterUpgrade[0].name"},
		"path in name":   {yaml: "addonStages:\n  BeforeClusterUpgrade:\n    - {name: ../etc, action: apply}\n", field: "addonStages.BeforeClusterUpgrade[0].name"},
		"slash in name":  {yaml: "addonStages:\n  BeforeClusterUpgrade:\n    - {name: a/b, action: apply}\n", field: "addonStages.BeforeClusterUpgrade[0].name"},
		"bad action":     {yaml: "addonStages:\n  BeforeClusterUpgrade:\n    - {name: cni, action: install}\n", field: "addonStages.BeforeClusterUpgrade[0].action"},
		"no objects":     {yaml: cond("        conditions: 'true'\n"), field: "addonStages.BeforeClusterUpgrade[0].waitForPreCondition"},
		"no expression":  {yaml: cond("        objects: [{key: a, apiVersion: v1, kind: ConfigMap, name: x}]\n"), field: "addonStages.BeforeClusterUpgrade[0].waitForPreCondition"},
		"bad key":        {yaml: cond("        objects: [{key: a-b, apiVersion: v1, kind: ConfigMap, name: x}]\n        conditions: 'true'\n"), field: "addonStages.BeforeClusterUpgrade[0].waitForPreCondition"},
		"reserved key":   {yaml: cond("        objects: [{key: in, apiVersion: v1, kind: ConfigMap, name: x}]\n        conditions: 'true'\n"), field: "addonStages.BeforeClusterUpgrade[0].waitForPreCondition"},
		"duplicate key":  {yaml: cond("        objects: [{key: a, apiVersion: v1, kind: ConfigMap, name: x}, {key: a, apiVersion: v1, kind: ConfigMap, name: other}]\n        conditions: 'true'\n"), field: "addonStages.BeforeClusterUpgrade[0].waitForPreCondition"},
		"no kind":        {yaml: cond("        objects: [{key: a, apiVersion: v1, name: x}]\n        conditions: 'true'\n"), field: "addonStages.BeforeClusterUpgrade[0].waitForPreCondition"},
		"bad apiVersion": {yaml: cond("        objects: [{key: a, apiVersion: a/b/c, kind: ConfigMap, name: x}]\n        conditions: 'true'\n"), field: "addonStages.BeforeClusterUpgrade[0].waitForPreCondition"},
		"syntax error":   {yaml: cond("        objects: [{key: a, apiVersion: v1, kind: ConfigMap, name: x}]\n        conditions: 'a.data ==='\n"), field: "addonStages.BeforeClusterUpgrade[0].waitForPreCondition"},
		"undeclared var": {yaml: cond("        objects: [{key: a, apiVersion: v1, kind: ConfigMap, name: x}]\n        conditions: 'b.data.x == \"1\"'\n"), field: "addonStages.BeforeClusterUpgrade[0].waitForPreCondition"},
		"not a bool":     {yaml: cond("        objects: [{key: a, apiVersion: v1, kind: ConfigMap, name: x}]\n        conditions: 'size(a)'\n"), field: "addonStages.BeforeClusterUpgrade[0].waitForPreCondition"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Parse: got %v, want ErrInvalidConfig", err)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Errorf("field: got %q, want %q (%v)", ce.Field, tc.field, err)
			}
		})
	}
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
	c, err := Parse([]byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	post := c.Stages(HookBeforeClusterUpgrade)[0].WaitForPostCondition
	pre := c.Stages(HookBeforeClusterUpgrade)[1].WaitForPreCondition
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
