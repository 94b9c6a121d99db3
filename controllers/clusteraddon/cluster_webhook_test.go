package clusteraddon

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

func TestClusterWebhook(t *testing.T) {
	// Its own namespace, and Clusters without a kubeconfig: nothing reaches the workload cluster.
	t.Parallel()
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

// newWebhookNamespace returns a namespace in which the test API server calls the Cluster webhooks,
// with ClusterStackReleases of three Kubernetes minors.
func newWebhookNamespace(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "addon-webhook-", Labels: map[string]string{webhookNamespaceLabel: "true"}}}
	if err := mgmt.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for name, k8s := range map[string]string{"openstack-scs-1-32-v1": "v1.32.5", "openstack-scs-1-33-v1": "v1.33.2", "openstack-scs-1-34-v1": "v1.34.1"} {
		csr := &csv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}}
		if err := mgmt.Client.Create(ctx, csr); err != nil {
			t.Fatal(err)
		}
		csr.Status.KubernetesVersion = k8s
		if err := mgmt.Client.Status().Update(ctx, csr); err != nil {
			t.Fatal(err)
		}
	}
	return ns.Name
}

// TestClusterWebhooksThroughAPIServer sends Cluster writes through the test API server, which
// calls the webhooks as installed from config/webhook/manifests.yaml on the manager's webhook
// server: paths, rules, the order of defaulting and validation and the decoding of admission
// requests all take part.
func TestClusterWebhooksThroughAPIServer(t *testing.T) {
	// Its own namespace, and Clusters without a kubeconfig: nothing reaches the workload cluster.
	t.Parallel()
	ctx := context.Background()
	ns := newWebhookNamespace(t)
	cluster := func(name, class, version string) *clusterv1.Cluster {
		return &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{ClassRef: clusterv1.ClusterClassRef{Name: class}, Version: version}}}
	}
	get := func(t *testing.T, name string) *clusterv1.Cluster {
		t.Helper()
		c := &clusterv1.Cluster{}
		if err := mgmt.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// refused checks that the API server refused a write because the webhook denied it, with
	// the webhook's message.
	refused := func(t *testing.T, err error, want string) {
		t.Helper()
		switch {
		case err == nil:
			t.Fatalf("the write was accepted; want it refused with %q", want)
		case !strings.Contains(err.Error(), "denied the request"):
			t.Fatalf("the write failed, but not by a webhook denial: %v", err)
		case !strings.Contains(err.Error(), want):
			t.Fatalf("refused with %v; want %q", err, want)
		}
	}

	t.Run("empty version is defaulted from the release", func(t *testing.T) {
		c := cluster("defaulted", "openstack-scs-1-32-v1", "")
		if err := mgmt.Client.Create(ctx, c); err != nil {
			t.Fatalf("create: %v", err)
		}
		if got := get(t, c.Name).Spec.Topology.Version; got != "v1.32.5" {
			t.Errorf("stored spec.topology.version %q, want v1.32.5 from ClusterStackRelease openstack-scs-1-32-v1", got)
		}
	})

	t.Run("create with a version that does not match the release", func(t *testing.T) {
		err := mgmt.Client.Create(ctx, cluster("mismatch", "openstack-scs-1-32-v1", "v1.32.4"))
		refused(t, err, `spec.topology.version: "v1.32.4" does not match Kubernetes v1.32.5 of release openstack-scs-1-32-v1`)
	})

	t.Run("create with a release whose version is not known", func(t *testing.T) {
		// With an empty version the CRD schema refuses it before the validating webhook sees it.
		err := mgmt.Client.Create(ctx, cluster("unknown", "openstack-scs-1-32-v9", "v1.32.5"))
		refused(t, err, "the Kubernetes version of release openstack-scs-1-32-v9 is not known yet")
	})

	t.Run("a class of another namespace is checked against that namespace's release", func(t *testing.T) {
		// The tenant namespace has no ClusterStackReleases; ns has them.
		tenant := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "addon-webhook-tenant-", Labels: map[string]string{webhookNamespaceLabel: "true"}}}
		if err := mgmt.Client.Create(ctx, tenant); err != nil {
			t.Fatal(err)
		}
		c := cluster("cross", "openstack-scs-1-32-v1", "")
		c.Namespace, c.Spec.Topology.ClassRef.Namespace = tenant.Name, ns
		if err := mgmt.Client.Create(ctx, c); err != nil {
			t.Fatalf("create: %v", err)
		}
		stored := &clusterv1.Cluster{}
		if err := mgmt.Client.Get(ctx, types.NamespacedName{Namespace: tenant.Name, Name: c.Name}, stored); err != nil {
			t.Fatal(err)
		}
		if got := stored.Spec.Topology.Version; got != "v1.32.5" {
			t.Errorf("stored spec.topology.version %q, want v1.32.5 from ClusterStackRelease %s/openstack-scs-1-32-v1", got, ns)
		}
		// Upgrades follow the releases of the class's namespace too.
		stored.Spec.Topology.ClassRef.Name, stored.Spec.Topology.Version = "openstack-scs-1-34-v1", "v1.34.1"
		refused(t, mgmt.Client.Update(ctx, stored), "upgrade one minor version at a time")

		// Without classRef.namespace the tenant's own (missing) release is asked for.
		local := cluster("local", "openstack-scs-1-32-v1", "v1.32.5")
		local.Namespace = tenant.Name
		refused(t, mgmt.Client.Create(ctx, local), "its ClusterStackRelease in namespace "+tenant.Name+" does not exist")
	})

	t.Run("a foreign class is accepted untouched", func(t *testing.T) {
		// A version no release has and a class no ClusterStackRelease names: neither webhook
		// may look at it.
		c := cluster("foreign", "my-own-class", "v1.20.0")
		if err := mgmt.Client.Create(ctx, c); err != nil {
			t.Fatalf("create: %v", err)
		}
		stored := get(t, c.Name)
		if diff := cmp.Diff(c.Spec, stored.Spec); diff != "" {
			t.Errorf("the webhooks changed the spec of a Cluster of a foreign class (-sent +stored):\n%s", diff)
		}
		// Updates between foreign classes are not limited to one minor either.
		stored.Spec.Topology.ClassRef.Name, stored.Spec.Topology.Version = "other-class", "v1.22.0"
		if err := mgmt.Client.Update(ctx, stored); err != nil {
			t.Errorf("update between foreign classes: %v", err)
		}
	})

	// Updates of a Cluster on the 1.33 release.
	base := cluster("upgraded", "openstack-scs-1-33-v1", "v1.33.2")
	if err := mgmt.Client.Create(ctx, base); err != nil {
		t.Fatalf("create: %v", err)
	}
	for _, tc := range []struct {
		name, class, version, want string
	}{
		{name: "version mismatch", class: "openstack-scs-1-34-v1", version: "v1.34.0", want: `spec.topology.version: "v1.34.0" does not match Kubernetes v1.34.1 of release openstack-scs-1-34-v1`},
		{name: "downgrade", class: "openstack-scs-1-32-v1", version: "v1.32.5", want: "openstack-scs-1-32-v1 would take Kubernetes from 1.33 to 1.32; Kubernetes cannot be downgraded"},
		{name: "other stack", class: "openstack-scs2-1-33-v1", version: "v1.33.2", want: "changes the cluster stack from openstack-scs to openstack-scs2; provider and stack name cannot change"},
		{name: "other provider", class: "docker-scs-1-33-v1", version: "v1.33.2", want: "changes the cluster stack from openstack-scs to docker-scs; provider and stack name cannot change"},
		{name: "foreign class", class: "my-own-class", version: "v1.33.2", want: `"my-own-class" is not a cluster-stack ClusterClass`},
	} {
		t.Run("update refused: "+tc.name, func(t *testing.T) {
			c := get(t, base.Name)
			c.Spec.Topology.ClassRef.Name, c.Spec.Topology.Version = tc.class, tc.version
			refused(t, mgmt.Client.Update(ctx, c), tc.want)
			if got := get(t, base.Name).Spec.Topology; got.ClassRef.Name != "openstack-scs-1-33-v1" || got.Version != "v1.33.2" {
				t.Errorf("a refused update changed the Cluster: class %s, version %s", got.ClassRef.Name, got.Version)
			}
		})
	}

	t.Run("update refused: minor jump of 2", func(t *testing.T) {
		c := cluster("jump", "openstack-scs-1-32-v1", "v1.32.5")
		if err := mgmt.Client.Create(ctx, c); err != nil {
			t.Fatalf("create: %v", err)
		}
		c.Spec.Topology.ClassRef.Name, c.Spec.Topology.Version = "openstack-scs-1-34-v1", "v1.34.1"
		refused(t, mgmt.Client.Update(ctx, c), "openstack-scs-1-34-v1 would take Kubernetes from 1.32 to 1.34; upgrade one minor version at a time (to a 1.33 release first)")
	})

	t.Run("update to the next minor with the version left empty is defaulted", func(t *testing.T) {
		c := get(t, "jump")
		c.Spec.Topology.ClassRef.Name, c.Spec.Topology.Version = "openstack-scs-1-33-v1", ""
		if err := mgmt.Client.Update(ctx, c); err != nil {
			t.Fatalf("update: %v", err)
		}
		if got := get(t, c.Name).Spec.Topology.Version; got != "v1.33.2" {
			t.Errorf("stored spec.topology.version %q, want v1.33.2", got)
		}
	})
}
