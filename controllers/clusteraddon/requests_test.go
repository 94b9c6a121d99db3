package clusteraddon

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

// maxRequestsPerNewCluster is the reference operator's count for a new workload cluster (one patch
// per addon object of its test release, 15): the operator must not need more round trips to a
// remote cluster, here for a release of four objects of four kinds (fixture v7, the e2e
// benchmarks' addon: a Namespace per Cluster's namespace and a ConfigMap, ServiceAccount and
// Deployment in it, so that no other test's objects are in the way).
const maxRequestsPerNewCluster = 15

// TestRequestsToNewWorkloadCluster counts every request the manager sends to a new workload
// cluster (the second API server, through a counting transport) until its addons are Ready: with
// the cluster's admin credential one SelfSubjectAccessReview stands for every permission; with a
// credential that may only do what the addons need, the reviews are per permission (create and
// patch of each kind), and the addons are applied all the same.
func TestRequestsToNewWorkloadCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		// rules restrict the credential to a ClusterRole; nil is the admin credential.
		rules       []rbacv1.PolicyRule
		wantReviews int
	}{
		{name: "admin", wantReviews: 1},
		{
			name: "restricted",
			rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"namespaces", "configmaps", "serviceaccounts"}, Verbs: []string{"get", "list", "create", "patch", "delete"}},
				{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "create", "patch", "delete"}},
			},
			// Everything (denied), and create and patch of each of the four kinds.
			wantReviews: 9,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			ns := newNamespace(t)
			cfg := workload.Config
			if tc.rules != nil {
				cfg = restrictedUser(t, "addons-"+ns, tc.rules)
			}
			const name = "echo"
			key := types.NamespacedName{Namespace: ns, Name: name}
			got := requestsUntilReady(t, key, func() {
				createCluster(t, ns, name, "v7", true, false)
				createKubeconfig(t, ns, name, cfg)
			})
			t.Logf("%s credential: %d reads, %d writes, %d SelfSubjectAccessReviews until Ready", tc.name, got.reads, got.writes, got.reviews)
			if got.reviews != tc.wantReviews {
				t.Errorf("%d SelfSubjectAccessReviews, want %d", got.reviews, tc.wantReviews)
			}
			if got.writes != 4 {
				t.Errorf("%d writes, want 4 (one apply per addon object)", got.writes)
			}
			if tc.rules == nil && got.total() > maxRequestsPerNewCluster {
				t.Errorf("%d requests to the new workload cluster, want at most %d", got.total(), maxRequestsPerNewCluster)
			}
		})
	}
}

// requestsUntilReady watches the ClusterAddon of cluster, calls create, and returns what the
// manager sent to its workload cluster when the ClusterAddon first reads Ready (later requests
// are drift checks).
func requestsUntilReady(t *testing.T, cluster types.NamespacedName, create func()) requestCount {
	t.Helper()
	ctx := context.Background()
	wc, err := client.NewWithWatch(mgmt.Config, client.Options{Scheme: mgmt.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx, &csv1alpha1.ClusterAddonList{}, client.InNamespace(cluster.Namespace))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	create()
	deadline := time.After(timeout)
	for {
		select {
		case <-deadline:
			t.Fatalf("ClusterAddon of Cluster %s did not turn Ready within %s", cluster, timeout)
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("the watch of ClusterAddons ended")
			}
			if ca, isAddon := ev.Object.(*csv1alpha1.ClusterAddon); isAddon && ca.Status.Ready {
				return workloadWrites.Of(cluster)
			}
		}
	}
}

// restrictedUser returns the credential of a new user of the workload API server who may do what
// rules grant, cluster-wide, once the API server's authorizer knows it.
func restrictedUser(t *testing.T, user string, rules []rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	ctx := context.Background()
	cfg, err := workload.AddUser(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: rules}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := workload.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = workload.Client.Delete(context.Background(), o) })
	}
	// Role changes reach the authorizer through an informer: wait until the last rule is in.
	plain, err := client.New(cfg, client.Options{Scheme: workload.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	last := rules[len(rules)-1]
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		ssar := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Group: last.APIGroups[0], Resource: last.Resources[0], Verb: last.Verbs[len(last.Verbs)-1]},
		}}
		if err := plain.Create(ctx, ssar); err != nil {
			return false, err
		}
		return ssar.Status.Allowed, nil
	})
	if err != nil {
		t.Fatalf("waiting for the rules of %s: %v", user, err)
	}
	return cfg
}

// TestIdleDriftCheckReadsNoObject checks that once a drift check has read every addon object and
// found it unchanged, the next drift checks (every 2 s in these tests) read no object: one
// metadata-only list per kind shows that nothing was written since. A change by someone else
// still shows: the object is read and the drift repaired.
func TestIdleDriftCheckReadsNoObject(t *testing.T) {
	isolate(t)
	ns := newNamespace(t)
	const name = "foxtrot"
	key := types.NamespacedName{Namespace: ns, Name: name}
	requestsUntilReady(t, key, func() { createCluster(t, ns, name, "v7", true, true) })

	// Four kinds (fixture v7): a cheap check is four lists. Wait for the first ones.
	const kinds = 4
	g := NewWithT(t)
	g.Eventually(func() int { return workloadWrites.Of(key).lists }).WithTimeout(timeout).Should(BeNumerically(">=", kinds))
	before := workloadWrites.Of(key)
	g.Eventually(func() int { return workloadWrites.Of(key).lists - before.lists }).WithTimeout(timeout).Should(BeNumerically(">=", 2*kinds))
	after := workloadWrites.Of(key)
	if n := after.objectReads - before.objectReads; n != 0 {
		t.Errorf("%d reads of objects in %d idle drift checks, want none", n, (after.lists-before.lists)/kinds)
	}
	if n := after.writes - before.writes; n != 0 {
		t.Errorf("%d writes in idle drift checks, want none", n)
	}

	// Someone else writes the ConfigMap (a label of theirs, no drift): the next check reads the
	// objects again.
	ctx := context.Background()
	addonNS := "addons-" + ns
	cm := workloadConfigMap(g, addonNS, "fixture-cni")
	cm.Labels["theirs"] = "x"
	g.Expect(workload.Client.Update(ctx, cm)).To(Succeed())
	g.Eventually(func() int { return workloadWrites.Of(key).objectReads - after.objectReads }).WithTimeout(timeout).Should(BeNumerically(">=", 1))

	// Someone deletes it: the next check finds it missing and applies it again.
	g.Expect(workload.Client.Delete(ctx, cm)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(workloadConfigMap(g, addonNS, "fixture-cni").Data).To(HaveKeyWithValue("clusterName", name))
	}).WithTimeout(timeout).Should(Succeed())
}
