package plan

import (
	"errors"
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon/condition"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, every error must classify as
// ErrInvalidConfig, and every accepted stage must name a single path element.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validConfig))
	f.Add([]byte("addonStages:\n  BeforeClusterUpgrade:\n    - {name: a, action: delete}\n"))
	f.Add([]byte("addonStages: {AfterControlPlaneInitialized: [{helmChartName: x, action: apply, waitForPostCondition: {objects: [{key: k, apiVersion: v1, kind: K, name: n}], conditions: 'k.a.b > 1'}}]}"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not match ErrInvalidConfig", err)
			}
			return
		}
		for hook, stages := range c.AddonStages {
			for _, s := range stages {
				if CheckChartName(s.Name) != nil {
					t.Fatalf("accepted chart name %q in %s", s.Name, hook)
				}
				if s.Action != ActionApply && s.Action != ActionDelete {
					t.Fatalf("accepted action %q", s.Action)
				}
				for _, c := range []*condition.Condition{s.WaitForPreCondition, s.WaitForPostCondition} {
					if err := c.Compile(); err != nil {
						t.Fatalf("accepted a condition that does not compile: %v", err)
					}
				}
			}
		}
	})
}
