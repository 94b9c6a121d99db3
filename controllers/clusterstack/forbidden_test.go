package clusterstack_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusterstack"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// restrictedNamespace is served only by the restricted manager of TestForbiddenKindsApplyNothing;
// the suite's admin manager ignores it.
const restrictedNamespace = "cs-restricted"

const restrictedUser = "restricted-operator"

// operatorRole returns the operator's ClusterRole as generated into config/rbac, renamed, with
// edit applied to its rules.
func operatorRole(t *testing.T, name string, edit func([]rbacv1.PolicyRule) []rbacv1.PolicyRule) *rbacv1.ClusterRole {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(data, role); err != nil {
		t.Fatal(err)
	}
	if len(role.Rules) == 0 {
		t.Fatal("config/rbac/role.yaml holds no rules")
	}
	role.ObjectMeta = metav1.ObjectMeta{Name: name}
	role.Rules = edit(role.Rules)
	return role
}

// withoutImageWrites keeps only the read verbs on ORC Images.
func withoutImageWrites(rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	for i, r := range rules {
		if slices.Contains(r.APIGroups, "openstack.k-orc.cloud") {
			rules[i].Verbs = []string{"get", "list", "watch"}
		}
	}
	return rules
}

// startRestrictedManager runs the operator's controllers as user, for restrictedNamespace only,
// until the test ends.
func startRestrictedManager(t *testing.T, cfg *rest.Config) {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   cache.Options{DefaultNamespaces: map[string]cache.Config{restrictedNamespace: {}}},
		Client:  client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// The suite's manager registered controllers of the same names in this process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	releases, err := resolver.New(mgr.GetClient(), source.Config{}, t.TempDir(), resolver.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	if err := clusterstack.Setup(mgr, clusterstack.Options{Releases: releases, ReleaseCheckInterval: checkInterval}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "restricted manager:", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitAllowed waits until the API server's RBAC authorizer, which learns of RBAC changes from
// an informer, gives user's config the answer want.
func waitAllowed(t *testing.T, cfg *rest.Config, attrs authorizationv1.ResourceAttributes, want bool) {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	NewWithT(t).Eventually(func(g Gomega) {
		ssar := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}
		g.Expect(c.Create(context.Background(), ssar)).To(Succeed())
		g.Expect(ssar.Status.Allowed).To(Equal(want))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// TestForbiddenKindsApplyNothing runs the operator as a user whose ClusterRole is the generated
// one without write access to ORC Images, against a stack that renders one: the release must
// say what to grant and apply nothing, then apply everything once it is granted.
func TestForbiddenKindsApplyNothing(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	// The suite's manager ignores this one namespace by name, so a second run (-count=2) uses
	// it again: envtest never finishes deleting a namespace. The test leaves nothing behind in it.
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restrictedNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ns, repo := restrictedNamespace, repoFor(t)

	user, err := env.ControlPlane.AddUser(envtest.User{Name: restrictedUser}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	cfg := user.Config()
	role := operatorRole(t, "restricted-operator", withoutImageWrites)
	g.Expect(k8s.Create(ctx, role)).To(Succeed())
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "restricted-operator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: restrictedUser}},
	}
	g.Expect(k8s.Create(ctx, binding)).To(Succeed())
	// Runs last, after the restricted manager has stopped (cleanups run last to first).
	t.Cleanup(func() {
		for _, o := range []client.Object{binding, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role.Name}}} {
			if err := k8s.Delete(context.Background(), o); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("cleaning up %T %s: %v", o, o.GetName(), err)
			}
		}
	})
	imagePatch := authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Group: "openstack.k-orc.cloud", Resource: "images"}
	waitAllowed(t, cfg, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Group: "cluster.x-k8s.io", Resource: "clusterclasses"}, true)
	waitAllowed(t, cfg, imagePatch, false)
	startRestrictedManager(t, cfg)
	// Runs first, while the restricted manager still runs: deleting the ClusterStack takes its
	// releases and everything they applied with it.
	t.Cleanup(func() {
		cs := &clusterstackv1alpha1.ClusterStack{}
		if err := k8s.Get(context.Background(), nsName(ns), cs); apierrors.IsNotFound(err) {
			return
		} else if err != nil {
			t.Errorf("cleaning up: %v", err)
			return
		}
		if err := k8s.Delete(context.Background(), cs); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleaning up: %v", err)
			return
		}
		NewWithT(t).Eventually(func(g Gomega) {
			list := &clusterstackv1alpha1.ClusterStackReleaseList{}
			g.Expect(k8s.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(BeEmpty())
			err := k8s.Get(context.Background(), nsName(ns), &clusterstackv1alpha1.ClusterStack{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "ClusterStack still there: %v", err)
		}).WithTimeout(timeout).WithPolling(poll).Should(Succeed(), "deleting the ClusterStack of %s", ns)
	})

	publish(t, repo, fixtures.Options{StackVersion: "v1", Source: "openstack-scs-orc"})
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1"} })
	const rel = "openstack-scs-1-32-v1"
	g.Eventually(func(g Gomega) {
		csr := getCSR(g, ns, rel)
		applied := condition(csr.Status.Conditions, clusterstackv1alpha1.ResourcesAppliedCondition)
		g.Expect(applied.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(applied.Reason).To(Equal(clusterstackv1alpha1.ForbiddenReason))
		g.Expect(applied.Message).To(Equal(`Nothing applied: the operator is not allowed to write Image.openstack.k-orc.cloud. ` +
			`Its ClusterRole needs verbs create, patch on resource images in API group "openstack.k-orc.cloud"`))
		ready := condition(csr.Status.Conditions, clusterstackv1alpha1.ReadyCondition)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(clusterstackv1alpha1.ForbiddenReason))
		g.Expect(condition(csr.Status.Conditions, clusterstackv1alpha1.StalledCondition).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(csr.Status.Resources).To(BeEmpty())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// Nothing of the release exists: not the ClusterClass, not the templates, not the Image.
	released := func(g Gomega) []string {
		var found []string
		for _, gvk := range []schema.GroupVersionKind{
			{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "ClusterClass"},
			{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmControlPlaneTemplate"},
			{Group: "bootstrap.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmConfigTemplate"},
			{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackClusterTemplate"},
			{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackMachineTemplate"},
			{Group: "openstack.k-orc.cloud", Version: "v1alpha1", Kind: "Image"},
		} {
			list := &unstructured.UnstructuredList{}
			list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
			g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			for _, o := range list.Items {
				found = append(found, gvk.Kind+"/"+o.GetName())
			}
		}
		return found
	}
	g.Expect(released(g)).To(BeEmpty())

	// Granted: the next attempt applies the whole release.
	full := operatorRole(t, role.Name, func(r []rbacv1.PolicyRule) []rbacv1.PolicyRule { return r })
	full.ResourceVersion = ""
	live := &rbacv1.ClusterRole{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(role), live)).To(Succeed())
	live.Rules = full.Rules
	g.Expect(k8s.Update(ctx, live)).To(Succeed())
	waitAllowed(t, cfg, imagePatch, true)
	// RBAC is not watched: touch the release rather than wait for its retry.
	csr := getCSR(g, ns, rel)
	base := csr.DeepCopy()
	csr.Annotations = map[string]string{"test/touched": "granted"}
	g.Expect(k8s.Patch(ctx, csr, client.MergeFrom(base))).To(Succeed())
	g.Eventually(func(g Gomega) {
		csr := getCSR(g, ns, rel)
		applied := condition(csr.Status.Conditions, clusterstackv1alpha1.ResourcesAppliedCondition)
		g.Expect(applied.Status).To(Equal(metav1.ConditionTrue), "ResourcesApplied: %s", applied.Message)
		g.Expect(csr.Status.Resources).To(HaveLen(6))
		g.Expect(condition(csr.Status.Conditions, clusterstackv1alpha1.StalledCondition).Status).NotTo(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(released(g)).To(HaveLen(6))
}
