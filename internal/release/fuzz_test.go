package release

import (
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzParseMetadata checks that accepted metadata has well-formed versions
// and survives a marshal/parse round trip unchanged.
func FuzzParseMetadata(f *testing.F) {
	f.Add("apiVersion: metadata.clusterstack.x-k8s.io/v1alpha1\nversions:\n  clusterStack: v1\n  kubernetes: v1.32.5\n  components:\n    clusterAddon: v1\n    nodeImage: v1\n")
	f.Add("versions:\n  clusterStack: v0-sha.abc1234\n  kubernetes: 1.30.0\n  components:\n    clusterAddon: v0-sha-abc1234\n")
	f.Add("versions: [")
	f.Add("versions:\n  clusterStack: 1\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMetadata([]byte(s))
		if err != nil {
			return
		}
		for _, fn := range []func() error{
			func() error { _, err := m.StackVersion(); return err },
			func() error { _, err := m.AddonVersion(); return err },
			func() error { _, err := m.KubernetesMinor(); return err },
		} {
			if err := fn(); err != nil {
				t.Fatalf("accepted metadata with %v", err)
			}
		}
		data, err := yaml.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseMetadata(data)
		if err != nil || back != m {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, m)
		}
	})
}
