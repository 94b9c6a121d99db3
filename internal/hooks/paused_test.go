package hooks

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
)

// TestPausedAndCrossNamespaceClusters calls the handlers for paused Clusters and for Clusters
// whose class is in another namespace, with their ClusterAddons in the API server: a paused
// Cluster is answered from its ClusterAddon (held while its addons are not done, saying it is
// paused; let go when they are) and nothing is written for it.
func TestPausedAndCrossNamespaceClusters(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "hooks-paused-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	h := &Handlers{Reader: env.Client, Writer: env.Client, metrics: newRecorder(time.Now)}
	cluster := func(name, classNamespace string, pause func(*clusterv1.Cluster)) clusterv1.Cluster {
		c := clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}, Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{ClassRef: clusterv1.ClusterClassRef{Name: class, Namespace: classNamespace}}}}
		if pause != nil {
			pause(&c)
		}
		return c
	}
	bySpec := func(c *clusterv1.Cluster) { c.Spec.Paused = ptr.To(true) }
	byAnnotation := func(c *clusterv1.Cluster) { c.Annotations = map[string]string{clusterv1.PausedAnnotation: ""} }
	// pending creates a ClusterAddon that has not started on any release yet.
	pending := func(t *testing.T, cluster string) {
		t.Helper()
		ca := &csv1alpha1.ClusterAddon{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: addon.ClusterAddonName(cluster)},
			Spec:       csv1alpha1.ClusterAddonSpec{ClusterRef: &corev1.ObjectReference{APIVersion: clusterv1.GroupVersion.String(), Kind: "Cluster", Name: cluster, Namespace: ns.Name}},
		}
		if err := env.Client.Create(ctx, ca); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name      string
		cluster   clusterv1.Cluster
		installed bool
		// wantHeld is whether BeforeClusterUpgrade and AfterClusterUpgrade hold the Cluster;
		// wantMsg is in their message then.
		wantHeld bool
		wantMsg  string
	}{
		{name: "paused-spec-pending", cluster: cluster("paused-spec-pending", "", bySpec), wantHeld: true, wantMsg: "is paused"},
		{name: "paused-annotation-pending", cluster: cluster("paused-annotation-pending", "", byAnnotation), wantHeld: true, wantMsg: "is paused"},
		{name: "paused-spec-installed", cluster: cluster("paused-spec-installed", "", bySpec), installed: true},
		{name: "running-pending", cluster: cluster("running-pending", "", nil), wantHeld: true, wantMsg: "has not started on the addons of " + class},
		{name: "class-elsewhere-installed", cluster: cluster("class-elsewhere-installed", "stacks", nil), installed: true},
		{name: "class-elsewhere-pending", cluster: cluster("class-elsewhere-pending", "stacks", nil), wantHeld: true, wantMsg: "has not started on the addons of " + class},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.installed {
				installedAddon(t, ns.Name, tc.cluster.Name)
			} else {
				pending(t, tc.cluster.Name)
			}
			before := &runtimehooksv1.BeforeClusterUpgradeResponse{}
			h.BeforeClusterUpgrade(ctx, &runtimehooksv1.BeforeClusterUpgradeRequest{Cluster: tc.cluster}, before)
			after := &runtimehooksv1.AfterClusterUpgradeResponse{}
			h.AfterClusterUpgrade(ctx, &runtimehooksv1.AfterClusterUpgradeRequest{Cluster: tc.cluster}, after)
			for hook, resp := range map[string]*runtimehooksv1.CommonRetryResponse{"BeforeClusterUpgrade": &before.CommonRetryResponse, "AfterClusterUpgrade": &after.CommonRetryResponse} {
				if resp.Status != runtimehooksv1.ResponseStatusSuccess {
					t.Errorf("%s: status %s (%s), want Success", hook, resp.Status, resp.Message)
				}
				if held := resp.RetryAfterSeconds > 0; held != tc.wantHeld {
					t.Errorf("%s: held %v (retryAfterSeconds %d, %q), want %v", hook, held, resp.RetryAfterSeconds, resp.Message, tc.wantHeld)
				}
				if !strings.Contains(resp.Message, tc.wantMsg) {
					t.Errorf("%s: message %q, want it to contain %q", hook, resp.Message, tc.wantMsg)
				}
			}
		})
	}

	// AfterControlPlaneInitialized marks the ClusterAddon of a running Cluster, whatever the
	// namespace of its class, and writes nothing for a paused one.
	for _, tc := range []struct {
		name     string
		cluster  clusterv1.Cluster
		wantHook string
	}{
		{name: "init-paused-spec", cluster: cluster("init-paused-spec", "", bySpec)},
		{name: "init-paused-annotation", cluster: cluster("init-paused-annotation", "", byAnnotation)},
		{name: "init-running", cluster: cluster("init-running", "", nil), wantHook: csv1alpha1.HookAfterControlPlaneInitialized},
		{name: "init-class-elsewhere", cluster: cluster("init-class-elsewhere", "stacks", nil), wantHook: csv1alpha1.HookAfterControlPlaneInitialized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pending(t, tc.cluster.Name)
			resp := &runtimehooksv1.AfterControlPlaneInitializedResponse{}
			h.AfterControlPlaneInitialized(ctx, &runtimehooksv1.AfterControlPlaneInitializedRequest{Cluster: tc.cluster}, resp)
			if resp.Status != runtimehooksv1.ResponseStatusSuccess {
				t.Errorf("status %s (%s), want Success", resp.Status, resp.Message)
			}
			ca := &csv1alpha1.ClusterAddon{}
			if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: addon.ClusterAddonName(tc.cluster.Name)}, ca); err != nil {
				t.Fatal(err)
			}
			if ca.Spec.Hook != tc.wantHook {
				t.Errorf("ClusterAddon spec.hook %q, want %q", ca.Spec.Hook, tc.wantHook)
			}
		})
	}
}
