package main

import (
	"fmt"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The readiness check and the warm-up cover every watched kind once, in the form the controllers
// watch it (Clusters typed, ClusterClasses and ORC Images as metadata), ORC Images only where
// their CRD is served, and probe in the first watched namespace.
func TestWatchedKinds(t *testing.T) {
	orc := schema.GroupVersionKind{Group: "openstack.k-orc.cloud", Version: "v1alpha1", Kind: "Image"}
	withORC := meta.NewDefaultRESTMapper(nil)
	withORC.Add(orc, meta.RESTScopeNamespace)

	for name, tc := range map[string]struct {
		mapper     meta.RESTMapper
		namespaces []string
		wantORC    bool
		wantNS     string
	}{
		"all namespaces, no ORC": {mapper: meta.NewDefaultRESTMapper(nil)},
		"namespaces, ORC":        {mapper: withORC, namespaces: []string{"team-a", "team-b"}, wantORC: true, wantNS: "team-a"},
	} {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, k := range watchedKinds(tc.mapper, tc.namespaces) {
				if k.Namespace != tc.wantNS {
					t.Errorf("%T probes namespace %q, want %q", k.Object, k.Namespace, tc.wantNS)
				}
				got = append(got, fmt.Sprintf("%T %s", k.Object, k.Object.GetObjectKind().GroupVersionKind().Kind))
			}
			want := []string{
				"*v1alpha1.ClusterStack ", "*v1alpha1.ClusterStackRelease ",
				"*v1alpha1.OpenStackClusterStackReleaseTemplate ", "*v1alpha1.OpenStackClusterStackRelease ",
				"*v1beta2.Cluster ", "*v1.PartialObjectMetadata ClusterClass",
				"*v1alpha1.OpenStackNodeImageRelease ", "*v1alpha1.ClusterAddon ",
			}
			if tc.wantORC {
				want = append(want, "*v1.PartialObjectMetadata Image")
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("watchedKinds =\n%q\nwant\n%q", got, want)
			}
		})
	}
}
