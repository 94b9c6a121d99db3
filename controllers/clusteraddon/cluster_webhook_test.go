package clusteraddon

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

func TestClusterWebhook(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	for name, k8s := range map[string]string{"openstack-scs-1-32-v1": "v1.32.5", "openstack-scs-1-33-v1": "v1.33.2", "openstack-scs-1-34-v1": "v1.34.1"} {
		csr := &csv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if err := mgmt.Client.Create(ctx, csr); err != nil {
			t.Fatal(err)
		}
		csr.Status.KubernetesVersion = k8s
		if err := mgmt.Client.Status().Update(ctx, csr); err != nil {
			t.Fatal(err)
		}
	}
	w := &ClusterWebhook{Client: mgmt.Client}
	cluster := func(class, version string) *clusterv1.Cluster {
		return &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c"}, Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{ClassRef: clusterv1.ClusterClassRef{Name: class}, Version: version}}}
	}

	// Defaulting fills the version from the release, and only for cluster-stack classes.
	c := cluster("openstack-scs-1-32-v1", "")
	if err := w.Default(ctx, c); err != nil || c.Spec.Topology.Version != "v1.32.5" {
		t.Errorf("Default: version %q, %v; want v1.32.5", c.Spec.Topology.Version, err)
	}
	other := cluster("my-own-class", "")
	if err := w.Default(ctx, other); err != nil || other.Spec.Topology.Version != "" {
		t.Errorf("Default touched a Cluster of another class: %q, %v", other.Spec.Topology.Version, err)
	}

	for _, tc := range []struct {
		name     string
		old, new *clusterv1.Cluster
		wantErr  string
	}{
		{name: "create matching", new: cluster("openstack-scs-1-32-v1", "v1.32.5")},
		{name: "create other class", new: cluster("my-own-class", "v1.20.0")},
		{name: "create without ClusterClass", new: cluster("", "")},
		{name: "create wrong version", new: cluster("openstack-scs-1-32-v1", "v1.32.4"), wantErr: "spec.topology.version"},
		{name: "create unknown release", new: cluster("openstack-scs-1-32-v9", "v1.32.5"), wantErr: "not known yet"},
		{name: "update one minor", old: cluster("openstack-scs-1-32-v1", "v1.32.5"), new: cluster("openstack-scs-1-33-v1", "v1.33.2")},
		{name: "update two minors", old: cluster("openstack-scs-1-32-v1", "v1.32.5"), new: cluster("openstack-scs-1-34-v1", "v1.34.1"), wantErr: "one minor version at a time"},
		{name: "update downgrade", old: cluster("openstack-scs-1-33-v1", "v1.33.2"), new: cluster("openstack-scs-1-32-v1", "v1.32.5"), wantErr: "downgraded"},
		{name: "update other stack", old: cluster("openstack-scs-1-32-v1", "v1.32.5"), new: cluster("openstack-scs2-1-32-v1", "v1.32.5"), wantErr: "provider and stack name cannot change"},
		{name: "update other provider", old: cluster("openstack-scs-1-32-v1", "v1.32.5"), new: cluster("docker-scs-1-32-v1", "v1.32.5"), wantErr: "provider and stack name cannot change"},
		{name: "update to foreign class", old: cluster("openstack-scs-1-32-v1", "v1.32.5"), new: cluster("my-own-class", "v1.32.5"), wantErr: "not a cluster-stack ClusterClass"},
		{name: "update between foreign classes", old: cluster("a", "v1.30.0"), new: cluster("b", "v1.31.0")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.old == nil {
				_, err = w.ValidateCreate(ctx, tc.new)
			} else {
				_, err = w.ValidateUpdate(ctx, tc.old, tc.new)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("want allowed, got %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("want an error with %q, got %v", tc.wantErr, err)
			}
		})
	}
}
