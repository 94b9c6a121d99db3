package migration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusteraddon"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusterstack"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/openstack"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
	"github.com/seed-a720dd5e/clusterstack-operator/test/capiflow"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// What the reference leaves behind, named as it names it (see docs/migration.md).
const (
	repository = "kaas/cluster-stacks"
	// stackName is the ClusterStack; the reference users name it freely.
	stackName = "openstack-scs-1-32"
	// releaseName is the ClusterStackRelease and the OpenStackClusterStackRelease: the release tag.
	releaseName = "openstack-scs-1-32-v1"
	// helmReleaseName is what the reference passed to `helm template`: the release name without
	// its version, so that the chart's {{ .Release.Name }}-{{ .Chart.Version }} is the ClusterClass.
	helmReleaseName = "openstack-scs-1-32"
	className       = "openstack-scs-1-32-v1"
	imageName       = "ubuntu-capi-image-v1.32.5"
	// nodeImageName is <release without version>-<image name>-<nodeImage version>.
	nodeImageName = "openstack-scs-1-32-ubuntu-capi-image-v1.32.5-v1"
	templateName  = "openstack"
	clusterName   = "my-cluster"
	secretName    = "openstack"
	// referenceFieldManager and referenceLabel are how the reference applied the rendered
	// objects: server-side apply, forced, as "kubectl", with this label.
	referenceFieldManager = "kubectl"
	referenceLabel        = "clusterstack.x-k8s.io/instance"
)

// TestAdoptsWhatTheReferenceCreated sets up a namespace as the reference leaves it after
// installing release openstack-scs-1-32-v1 and the addons of a Cluster of it (objects, owner references, finalizers, labels,
// field manager and the reference's status with Cluster API v1beta1 conditions, stored under a
// schema that allowed them, as the reference's CRDs did), replaces the CRDs with this operator's
// (the migration's CRD step), starts this operator's controllers and checks that they adopt it
// all: every object Ready with this operator's conditions only, no object deleted and recreated
// (same UIDs), the ClusterClass and templates taken over under this operator's field manager,
// the Glance image found by name (same ID, no image created, no byte uploaded or imported,
// nothing downloaded), and the Cluster's addons continued: no hook run again, the workload
// objects the same ones, now applied by this operator too.
func TestAdoptsWhatTheReferenceCreated(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := env.Client

	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "migration-"}}
	g.Expect(c.Create(ctx, nsObj)).To(Succeed())
	ns := nsObj.Name

	cloud, err := openstackdouble.New()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(cloud.Close)
	clouds, cloudName := cloud.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	g.Expect(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName},
		StringData: map[string]string{scope.CloudsYAMLKey: clouds, scope.CloudNameKey: cloudName}})).To(Succeed())

	// The published release, in the registry the reference read it from.
	opts := fixtures.Options{NodeImages: true}
	g.Expect(opts.ReleaseName()).To(Equal(releaseName))
	dir, err := fixtures.Build(t.TempDir(), opts)
	g.Expect(err).NotTo(HaveOccurred())
	registry := fixtures.StartRegistry(t, nil)
	_, err = fixtures.Push(ctx, dir, registry+"/"+repository, releaseName, true)
	g.Expect(err).NotTo(HaveOccurred())
	rel, err := release.Load(dir, opts.Release(), release.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rel.NodeImages).To(HaveLen(1))
	g.Expect(rel.NodeImages[0].CreateOpts.Name).To(Equal(imageName))

	// The ClusterClass and its templates, as the reference applied them.
	rendered, err := render.Chart(ctx, rel.ClusterClassChart, render.Options{ReleaseName: helmReleaseName, Namespace: ns})
	g.Expect(err).NotTo(HaveOccurred())
	uids := map[schema.GroupVersionKind]map[string]types.UID{}
	var resources []any
	foundClass := false
	for _, o := range rendered {
		o.SetNamespace(ns)
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[referenceLabel] = "owned"
		o.SetLabels(labels)
		g.Expect(c.Patch(ctx, o, client.Apply, client.FieldOwner(referenceFieldManager), client.ForceOwnership)).To(Succeed(), "%s %s", o.GetKind(), o.GetName())
		gvk := o.GroupVersionKind()
		if uids[gvk] == nil {
			uids[gvk] = map[string]types.UID{}
		}
		uids[gvk][o.GetName()] = o.GetUID()
		foundClass = foundClass || (gvk.Kind == "ClusterClass" && o.GetName() == className)
		resources = append(resources, map[string]any{
			"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind,
			"namespace": ns, "name": o.GetName(), "status": "synced",
		})
	}
	g.Expect(foundClass).To(BeTrue(), "the release renders ClusterClass %s", className)

	// The image the reference created in Glance: by name, with the createOpts of
	// node-images.yaml, imported by web-download, and no property of this operator.
	img := cloud.AddImage(openstackdouble.Image{
		Name: imageName, Status: "active", Visibility: "private", DiskFormat: "qcow2", ContainerFormat: "bare",
		Owner: cloud.ProjectID(openstackdouble.DefaultProject), Size: 1 << 20,
	})

	// A Cluster of the release's class whose addons the reference installed: the objects of the
	// AfterControlPlaneInitialized stages in the workload cluster, applied as the reference
	// applies them (forced, as "kubectl", with its label).
	cluster := capiflow.TopologyCluster(ns, clusterName, className, "v1.32.5")
	g.Expect(c.Create(ctx, cluster)).To(Succeed())
	kubeconfig, err := capiflow.KubeconfigSecret(workload.Config, ns, clusterName)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Create(ctx, kubeconfig)).To(Succeed())
	addonUIDs := applyReferenceAddons(t, rel, cluster)

	restore := relaxStatusSchemas(t)

	// The objects of both reference controllers, with their metadata and status.
	template := object(infrav1alpha1.GroupVersion.String(), "OpenStackClusterStackReleaseTemplate", ns, templateName, map[string]any{
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"identityRef": map[string]any{"kind": "Secret", "name": secretName},
		}}},
	})
	create(t, template)
	cs := object(csv1alpha1.GroupVersion.String(), "ClusterStack", ns, stackName, map[string]any{
		"spec": map[string]any{
			"provider": "openstack", "name": "scs", "kubernetesVersion": "1.32", "channel": "stable",
			"autoSubscribe": false, "versions": []any{"v1"},
			"providerRef": map[string]any{"apiVersion": infrav1alpha1.GroupVersion.String(), "kind": "OpenStackClusterStackReleaseTemplate", "name": templateName},
		},
	})
	create(t, cs)
	csr := object(csv1alpha1.GroupVersion.String(), "ClusterStackRelease", ns, releaseName, map[string]any{
		"spec": map[string]any{"providerRef": map[string]any{
			"apiVersion": infrav1alpha1.GroupVersion.String(), "kind": "OpenStackClusterStackRelease", "name": releaseName,
		}},
	})
	// The reference's owner reference: neither controller nor blocking.
	csr.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: csv1alpha1.GroupVersion.String(), Kind: "ClusterStack", Name: stackName, UID: cs.GetUID()}})
	csr.SetFinalizers([]string{csv1alpha1.ClusterStackReleaseFinalizer})
	create(t, csr)
	oscsr := object(infrav1alpha1.GroupVersion.String(), "OpenStackClusterStackRelease", ns, releaseName, map[string]any{
		"spec": map[string]any{"identityRef": map[string]any{"kind": "Secret", "name": secretName}},
	})
	oscsr.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion: csv1alpha1.GroupVersion.String(), Kind: "ClusterStackRelease", Name: releaseName, UID: csr.GetUID(),
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}})
	create(t, oscsr)
	osnir := object(infrav1alpha1.GroupVersion.String(), "OpenStackNodeImageRelease", ns, nodeImageName, map[string]any{
		"spec": map[string]any{
			"identityRef": map[string]any{"kind": "Secret", "name": secretName},
			"image": map[string]any{
				"url": rel.NodeImages[0].URL,
				"createOpts": map[string]any{
					"name": imageName, "disk_format": "qcow2", "container_format": "bare", "visibility": "private",
				},
			},
		},
	})
	osnir.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: infrav1alpha1.GroupVersion.String(), Kind: "OpenStackClusterStackRelease", Name: releaseName, UID: oscsr.GetUID()}})
	create(t, osnir)
	clusterAddon := object(csv1alpha1.GroupVersion.String(), "ClusterAddon", ns, addon.ClusterAddonName(clusterName), map[string]any{
		"spec": map[string]any{
			"clusterStack": className, "version": "v1",
			"clusterRef": map[string]any{"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster", "name": clusterName, "namespace": ns, "uid": string(cluster.UID)},
		},
	})
	clusterAddon.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "cluster.x-k8s.io/v1beta1", Kind: "Cluster", Name: clusterName, UID: cluster.UID}})
	create(t, clusterAddon)

	ready := legacyCondition("Ready")
	setStatus(t, cs, map[string]any{
		"conditions":     []any{ready, legacyCondition("ClusterStackReleaseAvailable"), legacyCondition("ClusterStackReleasesSynced"), legacyCondition("ProviderClusterStackReleasesSynced")},
		"latestRelease":  releaseName + " | v1.32.5",
		"summary":        []any{map[string]any{"name": releaseName, "ready": true, "phase": "ClusterStackReleaseReady"}},
		"usableVersions": "v1",
	})
	setStatus(t, csr, map[string]any{
		"conditions":        []any{ready, legacyCondition("ClusterStackReleaseAssetsReady"), legacyCondition("GitAPIAvailable"), legacyCondition("HelmChartApplied"), legacyCondition("ProviderClusterStackReleaseReady")},
		"kubernetesVersion": "v1.32.5",
		"resources":         resources,
		"ready":             true,
	})
	setStatus(t, oscsr, map[string]any{
		"conditions": []any{ready, legacyCondition("ClusterStackReleaseAssetsReady"), legacyCondition("OpenStackNodeImageReleasesReady")},
		"ready":      true,
	})
	setStatus(t, clusterAddon, map[string]any{
		"conditions": []any{ready, legacyCondition("ClusterReady"), legacyCondition("ClusterStackReleaseAssetsReady"), legacyCondition("GitAPIAvailable"), legacyCondition("HelmChartApplied")},
		"resources":  []any{},
		"ready":      true,
	})
	setStatus(t, osnir, map[string]any{
		"conditions": []any{ready, legacyCondition("CloudAvailable"), legacyCondition("OpenStackImageServiceClientAvailable"), legacyCondition("OpenStackImageImportStarted"), legacyCondition("OpenStackImageReady")},
		"ready":      true,
	})

	// The migration: this operator's CRDs replace the reference's, then its manager starts.
	restore()
	g.Eventually(func(g Gomega) {
		// The stored legacy fields are pruned once the operator's schema is in force.
		got := get(t, osnir)
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		g.Expect(conds).NotTo(BeEmpty())
		g.Expect(conds[0]).NotTo(HaveKey("severity"))
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

	cloud.ResetCalls()
	var downloads atomic.Int32
	startOperator(t, ns, registry, &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		downloads.Add(1)
		return nil, errors.New("no node image may be downloaded: the image is in Glance")
	})})

	// Everything becomes Ready under this operator's conditions.
	for _, o := range []*unstructured.Unstructured{cs, csr, oscsr, osnir, clusterAddon} {
		g.Eventually(func(g Gomega) {
			got := get(t, o)
			cond, err := conditions.UnstructuredGet(got, csv1alpha1.ReadyCondition)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cond).NotTo(BeNil())
			g.Expect(cond.Status).To(Equal(metav1.ConditionTrue), "%s %s: %s %s", o.GetKind(), o.GetName(), cond.Reason, cond.Message)
			observed, _, _ := unstructured.NestedInt64(got.Object, "status", "observedGeneration")
			status, _ := json.Marshal(got.Object["status"])
			g.Expect(observed).To(Equal(got.GetGeneration()), "%s %s: status %s", o.GetKind(), o.GetName(), status)
			// The reference's conditions are gone: they would only say stale things.
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				g.Expect(legacyTypes).NotTo(HaveKey(c.(map[string]any)["type"]), "%s %s: status %s", o.GetKind(), o.GetName(), status)
			}
		}).WithTimeout(90*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "%s %s", o.GetKind(), o.GetName())
	}

	// The ClusterClass and templates: the same objects, now written by this operator.
	g.Eventually(func(g Gomega) {
		for gvk, byName := range uids {
			for n, uid := range byName {
				live := &unstructured.Unstructured{}
				live.SetGroupVersionKind(gvk)
				g.Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, live)).To(Succeed())
				g.Expect(live.GetUID()).To(Equal(uid), "%s %s was recreated", gvk.Kind, n)
				g.Expect(live.GetDeletionTimestamp()).To(BeNil(), "%s %s is being deleted", gvk.Kind, n)
				g.Expect(live.GetLabels()).To(HaveKeyWithValue(clusterstack.ReleaseLabel, releaseName), "%s %s not adopted", gvk.Kind, n)
				g.Expect(managers(live)).To(ContainElement(clusterstack.FieldManager), "%s %s not adopted", gvk.Kind, n)
			}
		}
	}).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	var classes unstructured.UnstructuredList
	classes.SetGroupVersionKind(schema.GroupVersionKind{Group: "cluster.x-k8s.io", Version: "v1beta2", Kind: "ClusterClassList"})
	g.Expect(c.List(ctx, &classes, client.InNamespace(ns))).To(Succeed())
	g.Expect(classes.Items).To(HaveLen(1))

	// The release objects: the same ones, none added.
	for _, o := range []*unstructured.Unstructured{template, cs, csr, oscsr, osnir, clusterAddon} {
		g.Expect(get(t, o).GetUID()).To(Equal(o.GetUID()), "%s %s was recreated", o.GetKind(), o.GetName())
	}
	var releases csv1alpha1.ClusterStackReleaseList
	g.Expect(c.List(ctx, &releases, client.InNamespace(ns))).To(Succeed())
	g.Expect(releases.Items).To(HaveLen(1))
	var nodeImages infrav1alpha1.OpenStackNodeImageReleaseList
	g.Expect(c.List(ctx, &nodeImages, client.InNamespace(ns))).To(Succeed())
	g.Expect(nodeImages.Items).To(HaveLen(1))
	adopted := nodeImages.Items[0]
	g.Expect(adopted.Status.ImageID).To(Equal(img.ID))
	// Not created by this operator, so its default deletion policy never deletes it.
	g.Expect(adopted.Status.CreatedImage).To(BeFalse())

	// The addons: continued, not installed again. No hook ran (it would have set spec.hook and
	// sent HookDone), and the workload objects are the reference's, now also this operator's.
	var ca csv1alpha1.ClusterAddon
	g.Expect(c.Get(ctx, client.ObjectKeyFromObject(clusterAddon), &ca)).To(Succeed())
	g.Expect(ca.Spec.Hook).To(BeEmpty())
	g.Expect(ca.Spec.ClusterStack).To(Equal(className))
	g.Expect(ca.Spec.Version).To(Equal("v1"))
	g.Expect(ca.Status.Stages).To(BeEmpty())
	g.Expect(ca.Status.Resources).To(HaveLen(len(addonUIDs)))
	var events eventsv1.EventList
	g.Expect(c.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
	for _, e := range events.Items {
		g.Expect(e.Reason).NotTo(Equal("HookDone"), "a hook ran again: %s", e.Note)
	}
	g.Eventually(func(g Gomega) {
		for ref, uid := range addonUIDs {
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(ref.GroupVersionKind())
			g.Expect(workload.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, live)).To(Succeed())
			g.Expect(live.GetUID()).To(Equal(uid), "%s %s was recreated", ref.Kind, ref.Name)
			g.Expect(managers(live)).To(ContainElement(clusteraddon.FieldManager), "%s %s not adopted", ref.Kind, ref.Name)
		}
	}).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())

	// Glance: the reference's image, untouched.
	images := cloud.Images()
	g.Expect(images).To(HaveLen(1))
	g.Expect(images[0].ID).To(Equal(img.ID))
	for _, call := range []string{openstackdouble.CallCreateImage, openstackdouble.CallUploadImage, openstackdouble.CallImportImage, openstackdouble.CallDeleteImage, openstackdouble.CallUpdateImage} {
		g.Expect(cloud.Calls(call)).To(BeZero(), call)
	}
	g.Expect(downloads.Load()).To(BeZero())
}

// relaxStatusSchemas makes the status of the five kinds with status free-form, as the
// reference's CRDs had it for the fields this operator's CRDs do not know (Cluster API v1beta1
// conditions: severity, no reason on True), and returns the function that puts this operator's
// CRDs back.
func relaxStatusSchemas(t *testing.T) (restore func()) {
	t.Helper()
	ctx := context.Background()
	names := []string{
		"clusterstacks.clusterstack.x-k8s.io", "clusterstackreleases.clusterstack.x-k8s.io",
		"openstackclusterstackreleases.infrastructure.clusterstack.x-k8s.io", "openstacknodeimagereleases.infrastructure.clusterstack.x-k8s.io",
		"clusteraddons.clusterstack.x-k8s.io",
	}
	var originals []*apiextensionsv1.CustomResourceDefinition
	for _, n := range names {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: n}, crd); err != nil {
			t.Fatal(err)
		}
		originals = append(originals, crd.DeepCopy())
		for i := range crd.Spec.Versions {
			s := crd.Spec.Versions[i].Schema.OpenAPIV3Schema
			s.Properties["status"] = apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}
		}
		if err := env.Client.Update(ctx, crd); err != nil {
			t.Fatalf("relaxing %s: %v", n, err)
		}
	}
	return func() {
		t.Helper()
		for _, orig := range originals {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := env.Client.Get(ctx, client.ObjectKey{Name: orig.Name}, crd); err != nil {
				t.Fatal(err)
			}
			crd.Spec = orig.Spec
			if err := env.Client.Update(ctx, crd); err != nil {
				t.Fatalf("restoring %s: %v", orig.Name, err)
			}
		}
	}
}

// legacyTypes are the reference's condition types that this operator does not set.
var legacyTypes = map[string]bool{}

// legacyCondition is a True condition as the reference wrote it (Cluster API v1beta1: no
// reason, a severity field on False ones; none here, all are True).
func legacyCondition(condType string) map[string]any {
	if condType != "Ready" {
		legacyTypes[condType] = true
	}
	return map[string]any{"type": condType, "status": "True", "lastTransitionTime": "2025-06-01T10:00:00Z", "severity": ""}
}

func object(apiVersion, kind, ns, name string, content map[string]any) *unstructured.Unstructured {
	o := &unstructured.Unstructured{Object: content}
	o.SetAPIVersion(apiVersion)
	o.SetKind(kind)
	o.SetNamespace(ns)
	o.SetName(name)
	return o
}

func create(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	if err := env.Client.Create(context.Background(), o); err != nil {
		t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
	}
}

func get(t *testing.T, o *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(o.GroupVersionKind())
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(o), got); err != nil {
		t.Fatalf("reading %s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return got
}

// setStatus writes the status and waits until it reads back with the legacy fields, i.e. until
// the relaxed schema is in force.
func setStatus(t *testing.T, o *unstructured.Unstructured, status map[string]any) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		patch, err := json.Marshal(map[string]any{"status": status})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(env.Client.Status().Patch(context.Background(), o, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
		conds, _, _ := unstructured.NestedSlice(get(t, o).Object, "status", "conditions")
		g.Expect(conds).NotTo(BeEmpty())
		g.Expect(conds[0]).To(HaveKey("severity"))
	}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(Succeed(), "%s %s", o.GetKind(), o.GetName())
}

func managers(o *unstructured.Unstructured) []string {
	var out []string
	for _, m := range o.GetManagedFields() {
		out = append(out, m.Manager)
	}
	return out
}

// startOperator runs this operator's ClusterStack and OpenStack controllers, wired as main.go
// wires them, with the registry as the default release source (the reference's OCI_REGISTRY and
// OCI_REPOSITORY), until the test ends.
func startOperator(t *testing.T, ns, registry string, downloads *http.Client) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Client:                 client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defaultSource := source.Config{Type: source.TypeOCI, OCI: source.OCIConfig{Registry: registry, Repository: repository, PlainHTTP: true}}
	releases, err := resolver.New(mgr.GetClient(), defaultSource, filepath.Join(t.TempDir(), "releases"),
		resolver.WithConfinement(egress.AllowLoopbackForTests(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := clusterstack.Setup(mgr, clusterstack.Options{Releases: releases}); err != nil {
		t.Fatal(err)
	}
	if err := clusteraddon.Setup(mgr, clusteraddon.Options{Releases: releases, AddonCacheDir: filepath.Join(t.TempDir(), "addons")}); err != nil {
		t.Fatal(err)
	}
	if err := openstack.Setup(mgr, openstack.Options{
		Releases: releases, HTTPClient: downloads,
		NodeImage: nodeimage.Options{Egress: &egress.Policy{AllowHosts: []string{"images.invalid"}}},
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(fmt.Errorf("manager: %w", err))
		}
	})
}

// applyReferenceAddons renders the charts of the release's AfterControlPlaneInitialized stages
// for cluster (values templates included) and applies them to the workload cluster as the
// reference did. It returns the applied objects' UIDs.
func applyReferenceAddons(t *testing.T, rel *release.Release, cluster *clusterv1.Cluster) map[apply.Ref]types.UID {
	t.Helper()
	ctx := context.Background()
	renderer := &addon.Renderer{Dir: t.TempDir()}
	dir, err := renderer.Extract(rel)
	if err != nil {
		t.Fatal(err)
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cluster)
	if err != nil {
		t.Fatal(err)
	}
	content["apiVersion"], content["kind"] = clusterv1.GroupVersion.String(), "Cluster"
	in := addon.Input{KubeVersion: rel.Metadata.Versions.Kubernetes, Data: map[string]any{"Cluster": content}}
	uids := map[apply.Ref]types.UID{}
	for _, stage := range rel.AddonPlan.Stages("AfterControlPlaneInitialized") {
		objs, err := renderer.RenderChart(ctx, dir, stage.Name, in)
		if err != nil {
			t.Fatalf("rendering addon %s: %v", stage.Name, err)
		}
		for _, o := range objs {
			if o.GetNamespace() == "" {
				o.SetNamespace(addon.DefaultNamespace)
			}
			labels := o.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			labels[referenceLabel] = "owned"
			o.SetLabels(labels)
			if err := workload.Client.Patch(ctx, o, client.Apply, client.FieldOwner(referenceFieldManager), client.ForceOwnership); err != nil {
				t.Fatalf("applying addon %s %s: %v", o.GetKind(), o.GetName(), err)
			}
			uids[apply.RefOf(o)] = o.GetUID()
		}
	}
	if len(uids) == 0 {
		t.Fatal("the release's addons render nothing")
	}
	return uids
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
