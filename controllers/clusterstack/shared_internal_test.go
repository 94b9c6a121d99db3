package clusterstack

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
)

func csrOf(ns, n string, deleting bool, inventory ...apply.Ref) *clusterstackv1alpha1.ClusterStackRelease {
	csr := &clusterstackv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n}}
	if deleting {
		now := metav1.Now()
		csr.DeletionTimestamp = &now
	}
	for _, ref := range inventory {
		csr.Status.Resources = append(csr.Status.Resources, clusterstackv1alpha1.Resource{Group: ref.Group, Version: ref.Version, Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name})
	}
	return csr
}

// TestWrittenByOther checks the ownership rule: the newest release that holds an object and is
// not being deleted writes it, whichever release asks.
func TestWrittenByOther(t *testing.T) {
	t.Parallel()
	img := apply.Ref{Group: "openstack.k-orc.cloud", Version: "v1alpha1", Kind: "Image", Namespace: "ns", Name: "ubuntu-capi-image-v1.32.5"}
	other := apply.Ref{Group: "openstack.k-orc.cloud", Version: "v1alpha1", Kind: "Image", Namespace: "ns", Name: "other"}
	tests := []struct {
		name   string
		self   string
		others []*clusterstackv1alpha1.ClusterStackRelease
		want   bool
	}{
		{name: "alone", self: "openstack-scs-1-32-v1", want: false},
		{name: "a newer release holds it", self: "openstack-scs-1-32-v1", others: []*clusterstackv1alpha1.ClusterStackRelease{csrOf("ns", "openstack-scs-1-32-v2", false, img)}, want: true},
		{name: "numeric order, not text", self: "openstack-scs-1-32-v9", others: []*clusterstackv1alpha1.ClusterStackRelease{csrOf("ns", "openstack-scs-1-32-v10", false, img)}, want: true},
		{name: "an older release holds it", self: "openstack-scs-1-32-v2", others: []*clusterstackv1alpha1.ClusterStackRelease{csrOf("ns", "openstack-scs-1-32-v1", false, img)}, want: false},
		{name: "the newer one is being deleted", self: "openstack-scs-1-32-v1", others: []*clusterstackv1alpha1.ClusterStackRelease{csrOf("ns", "openstack-scs-1-32-v2", true, img)}, want: false},
		{name: "the newer one holds something else", self: "openstack-scs-1-32-v1", others: []*clusterstackv1alpha1.ClusterStackRelease{csrOf("ns", "openstack-scs-1-32-v2", false, other)}, want: false},
		{name: "a newer Kubernetes minor", self: "openstack-scs-1-32-v3", others: []*clusterstackv1alpha1.ClusterStackRelease{csrOf("ns", "openstack-scs-1-33-v1", false, img)}, want: true},
		{name: "a name that does not parse is older", self: "openstack-scs-1-32-v1", others: []*clusterstackv1alpha1.ClusterStackRelease{csrOf("ns", "hand-made", false, img)}, want: false},
		{name: "same name in another namespace: namespace order", self: "openstack-scs-1-32-v1", others: []*clusterstackv1alpha1.ClusterStackRelease{csrOf("zz", "openstack-scs-1-32-v1", false, img)}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sharing{self: infoOf(csrOf("ns", tt.self, false)), holders: map[apply.Ref][]releaseInfo{}}
			for _, o := range tt.others {
				info := infoOf(o)
				for _, ref := range apply.FromResources(o.Status.Resources) {
					s.holders[ref.Key()] = append(s.holders[ref.Key()], info)
				}
			}
			if got := s.writtenByOther(img); got != tt.want {
				t.Errorf("writtenByOther = %v, want %v", got, tt.want)
			}
		})
	}
}
