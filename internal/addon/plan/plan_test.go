package plan

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
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
