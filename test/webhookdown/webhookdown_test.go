// Package webhookdown shows that the operator's Cluster webhooks cannot take the management
// cluster down: with their configuration installed as generated (config/webhook/manifests.yaml,
// which the overlays and the chart ship) and no webhook server answering, as while the operator
// is stopped, Clusters of other classes and Clusters without topology are admitted, and only
// Clusters of cluster-stack classes are refused.
package webhookdown

import (
	"context"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

var env *testenv.Environment

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) (err error) {
		// No manager is started: nothing serves the webhooks the API server is told about.
		env, err = s.Start(testenv.Options{WebhookInstallOptions: envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml")},
		}})
		return err
	})
}

// ourClass is a cluster-stack ClusterClass name (<provider>-<stack>-<k8s major>-<minor>-<version>).
const ourClass = "openstack-scs-1-32-v1"

func cluster(ns, name, class string) *clusterv1.Cluster {
	c := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	// The API requires a spec; a Cluster without topology has, e.g., its pause flag.
	c.Spec.Paused = ptr.To(false)
	if class != "" {
		c.Spec.Topology = clusterv1.Topology{ClassRef: clusterv1.ClusterClassRef{Name: class}, Version: "v1.32.5"}
	}
	return c
}

// refusedForWebhook reports whether err is the API server's refusal because a webhook that must
// be called (failurePolicy Fail) could not be reached.
func refusedForWebhook(err error) bool {
	return apierrors.IsInternalError(err)
}

func TestWebhooksDownAdmitOtherClusters(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "webhookdown-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		// class is the Cluster's class on CREATE (empty: no topology); update the class on UPDATE.
		class, update string
		wantCreate    bool
		wantUpdate    bool
	}{
		{name: "other class", class: "other-class", update: "other-class-2", wantCreate: true, wantUpdate: true},
		{name: "no topology", wantCreate: true, wantUpdate: true},
		// Parses as far as provider and stack but has a '-' in the stack: not a cluster-stack class.
		{name: "dashed stack", class: "openstack-my-scs-1-32-v1", update: "openstack-my-scs-1-33-v1", wantCreate: true, wantUpdate: true},
		{name: "cluster-stack class", class: ourClass, wantCreate: false},
		{name: "hash version", class: "openstack-scs-1-32-v0-sha.abc1234", wantCreate: false},
		{name: "pre-release", class: "openstack-scs-1-32-v2-alpha.1", wantCreate: false},
		// Moving a Cluster of another class onto ours must be checked.
		{name: "other class to ours", class: "other-class", update: ourClass, wantCreate: true, wantUpdate: false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(ns.Name, "c"+string(rune('a'+i)), tc.class)
			err := env.Client.Create(ctx, c)
			if tc.wantCreate != (err == nil) {
				t.Fatalf("creating a Cluster of class %q with the webhooks down: got %v, want admitted %v", tc.class, err, tc.wantCreate)
			}
			if err != nil {
				if !refusedForWebhook(err) {
					t.Fatalf("creating a Cluster of class %q: got %v, want the refusal of an unreachable webhook", tc.class, err)
				}
				return
			}
			t.Cleanup(func() { _ = env.Client.Delete(ctx, c) })
			base := c.DeepCopy()
			if tc.update != "" {
				c.Spec.Topology.ClassRef.Name = tc.update
			}
			c.Labels = map[string]string{"updated": "true"}
			err = env.Client.Patch(ctx, c, client.MergeFrom(base))
			if tc.wantUpdate != (err == nil) {
				t.Fatalf("updating a Cluster of class %q to %q with the webhooks down: got %v, want admitted %v", tc.class, tc.update, err, tc.wantUpdate)
			}
			if err != nil && !refusedForWebhook(err) {
				t.Fatalf("updating a Cluster to class %q: got %v, want the refusal of an unreachable webhook", tc.update, err)
			}
		})
	}
}
