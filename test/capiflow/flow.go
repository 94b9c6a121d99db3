package capiflow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimecatalog "sigs.k8s.io/cluster-api/api/runtime/catalog"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
	runtimev1 "sigs.k8s.io/cluster-api/api/runtime/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/hooks"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
)

// ExtensionName is the name of the ExtensionConfig that registers the operator's runtime
// extension, as config/runtime-extension names it.
const ExtensionName = "clusterstack-operator"

// KubeadmControlPlaneGVK is the kind of the control plane Cluster API creates from the fixture
// classes, read unstructured (the operator's scheme does not know it).
var KubeadmControlPlaneGVK = schema.GroupVersionKind{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmControlPlane"}

// OpenStackClusterGVK is the kind of the infrastructure cluster of the fixture classes (CAPO's,
// its real CRD, with no controller behind it).
var OpenStackClusterGVK = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackCluster"}

// ErrNotYet is wrapped by the functions that observe Cluster API when what they look for is not
// there yet: the caller polls again.
var ErrNotYet = errors.New("not yet")

// FreePort returns a free TCP port on 127.0.0.1 (for the hook server).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ExtensionConfig returns the ExtensionConfig that registers the hook server on port with
// Cluster API for every namespace. Create it before the Clusters: Cluster API records the hooks a
// new Cluster is owed when the Cluster is created, and only calls extensions it discovered.
func ExtensionConfig(port int, caBundle []byte) *runtimev1.ExtensionConfig {
	return &runtimev1.ExtensionConfig{
		ObjectMeta: metav1.ObjectMeta{Name: ExtensionName},
		Spec: runtimev1.ExtensionConfigSpec{
			ClientConfig:      runtimev1.ClientConfig{URL: fmt.Sprintf("https://127.0.0.1:%d", port), CABundle: caBundle},
			NamespaceSelector: &metav1.LabelSelector{},
		},
	}
}

// WantHandlers returns the handler names Cluster API registers for the operator's extension:
// one per hook it serves, named <handler>.<ExtensionConfig name>.
func WantHandlers() []string {
	return []string{
		hooks.AfterControlPlaneInitializedHandler + "." + ExtensionName,
		hooks.BeforeClusterUpgradeHandler + "." + ExtensionName,
		hooks.AfterClusterUpgradeHandler + "." + ExtensionName,
	}
}

// Discovery returns Cluster API's Discovered condition of ext and the handlers it registered
// (sorted); a nil condition when Cluster API did not report yet. Cluster API patches the
// condition before the handlers: wait for both.
func Discovery(ext *runtimev1.ExtensionConfig) (*metav1.Condition, []string) {
	var handlers []string
	for _, h := range ext.Status.Handlers {
		handlers = append(handlers, h.Name)
	}
	sort.Strings(handlers)
	return meta.FindStatusCondition(ext.Status.Conditions, runtimev1.ExtensionConfigDiscoveredCondition), handlers
}

// KubeconfigSecret returns the Secret Cluster API would write for clusterName in namespace: a
// kubeconfig of the API server at workload, which stands in for the workload cluster.
func KubeconfigSecret(workload *rest.Config, namespace, clusterName string) (*corev1.Secret, error) {
	kc, err := workloadcluster.Kubeconfig(workload, clusterName)
	if err != nil {
		return nil, fmt.Errorf("writing the kubeconfig of %s: %w", clusterName, err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: workloadcluster.SecretName(clusterName), Labels: map[string]string{clusterv1.ClusterNameLabel: clusterName}},
		Type:       clusterv1.ClusterSecretType,
		Data:       map[string][]byte{workloadcluster.KubeconfigKey: kc},
	}, nil
}

// WorkerClass and WorkerName are the fixture classes' worker class and the Cluster's one
// MachineDeployment.
const (
	WorkerClass = "default-worker"
	WorkerName  = "md-0"
)

// TopologyCluster returns a Cluster with a managed topology of class at Kubernetes version: one
// control plane replica and one MachineDeployment with no replicas (no infrastructure provider
// runs, so Machines would never be ready and would hold a rollout forever; the
// MachineDeployment itself is still Cluster API's).
func TopologyCluster(namespace, name, class, version string) *clusterv1.Cluster {
	return &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{
			ClassRef:     clusterv1.ClusterClassRef{Name: class},
			Version:      version,
			ControlPlane: clusterv1.ControlPlaneTopology{Replicas: ptr.To[int32](1)},
			Workers: clusterv1.WorkersTopology{MachineDeployments: []clusterv1.MachineDeploymentTopology{
				{Class: WorkerClass, Name: WorkerName, Replicas: ptr.To[int32](0)},
			}},
		}},
	}
}

// Topology is what Cluster API created for a Cluster's managed topology.
type Topology struct {
	ControlPlane       *unstructured.Unstructured
	Infrastructure     *unstructured.Unstructured
	MachineDeployments []clusterv1.MachineDeployment
}

// GetTopology re-reads cluster and returns its topology objects; an error wrapping ErrNotYet
// while Cluster API has not set the references or created the objects.
func GetTopology(ctx context.Context, c client.Client, cluster *clusterv1.Cluster) (*Topology, error) {
	if err := c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster); err != nil {
		return nil, fmt.Errorf("reading Cluster %s: %w", cluster.Name, err)
	}
	if !cluster.Spec.ControlPlaneRef.IsDefined() || !cluster.Spec.InfrastructureRef.IsDefined() {
		return nil, fmt.Errorf("the Cluster's controlPlaneRef and infrastructureRef: %w", ErrNotYet)
	}
	t := &Topology{ControlPlane: &unstructured.Unstructured{}, Infrastructure: &unstructured.Unstructured{}}
	t.ControlPlane.SetGroupVersionKind(KubeadmControlPlaneGVK)
	t.Infrastructure.SetGroupVersionKind(OpenStackClusterGVK)
	for _, o := range []struct {
		obj  *unstructured.Unstructured
		name string
	}{{t.ControlPlane, cluster.Spec.ControlPlaneRef.Name}, {t.Infrastructure, cluster.Spec.InfrastructureRef.Name}} {
		err := c.Get(ctx, types.NamespacedName{Namespace: cluster.Namespace, Name: o.name}, o.obj)
		if client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("reading %s %s: %w", o.obj.GetKind(), o.name, err)
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.obj.GetKind(), o.name, ErrNotYet)
		}
	}
	mds := &clusterv1.MachineDeploymentList{}
	if err := c.List(ctx, mds, client.InNamespace(cluster.Namespace), client.MatchingLabels{clusterv1.ClusterNameLabel: cluster.Name}); err != nil {
		return nil, fmt.Errorf("listing the MachineDeployments of %s: %w", cluster.Name, err)
	}
	if len(mds.Items) == 0 {
		return nil, fmt.Errorf("MachineDeployments of %s: %w", cluster.Name, ErrNotYet)
	}
	t.MachineDeployments = mds.Items
	return t, nil
}

// ControlPlaneVersion returns spec.version of a KubeadmControlPlane: the version Cluster API's
// topology controller asked for (it only moves it once BeforeClusterUpgrade lets go).
func ControlPlaneVersion(kcp *unstructured.Unstructured) (string, error) {
	v, _, err := unstructured.NestedString(kcp.Object, "spec", "version")
	if err != nil {
		return "", fmt.Errorf("reading spec.version of KubeadmControlPlane %s: %w", kcp.GetName(), err)
	}
	return v, nil
}

// SetControlPlaneStatus reports what the KubeadmControlPlane controller would once its machines
// run: initialized, at version; kcp is updated to the patched object. The controller keeps both
// (it only ever sets initialized, and derives status.versions from Machines, of which there are
// none without an infrastructure provider, leaving the deprecated status.version that Cluster
// API falls back to as set here).
func SetControlPlaneStatus(ctx context.Context, c client.Client, kcp *unstructured.Unstructured, version string, initialized bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(kcp), kcp); err != nil {
			return err
		}
		base := kcp.DeepCopy()
		if err := unstructured.SetNestedField(kcp.Object, initialized, "status", "initialization", "controlPlaneInitialized"); err != nil {
			return err
		}
		if err := unstructured.SetNestedField(kcp.Object, version, "status", "version"); err != nil {
			return err
		}
		return c.Status().Patch(ctx, kcp, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	})
	if err != nil {
		return fmt.Errorf("patching the status of KubeadmControlPlane %s: %w", kcp.GetName(), err)
	}
	return nil
}

// TopologyReconciled returns Cluster API's TopologyReconciled condition of cluster (nil when
// unset): while BeforeClusterUpgrade holds an upgrade its reason is ClusterUpgrading and its
// message names the hook and what the hook answered.
func TopologyReconciled(cluster *clusterv1.Cluster) *metav1.Condition {
	return meta.FindStatusCondition(cluster.Status.Conditions, clusterv1.ClusterTopologyReconciledCondition)
}

// HookName is Cluster API's name of a hook (as in the pending-hooks annotation).
func HookName(hook runtimecatalog.Hook) string { return runtimecatalog.HookName(hook) }

// PendingHooks returns the hooks Cluster API still owes cluster (its pending-hooks annotation).
func PendingHooks(cluster *clusterv1.Cluster) string {
	return cluster.Annotations[runtimev1.PendingHooksAnnotation]
}

// HookCalls counts the calls of each hook (and of discovery) that the operator's extension
// server in this process answered, from the server's request metrics (it is a
// controller-runtime webhook server): every call comes from Cluster API, nobody else calls the
// handlers.
func HookCalls() (map[string]float64, error) {
	cat, err := hooks.NewCatalog()
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, hook := range []runtimecatalog.Hook{runtimehooksv1.AfterControlPlaneInitialized, runtimehooksv1.BeforeClusterUpgrade, runtimehooksv1.AfterClusterUpgrade} {
		gvh, err := cat.GroupVersionHook(hook)
		if err != nil {
			return nil, fmt.Errorf("finding the path of hook %s: %w", HookName(hook), err)
		}
		paths[runtimecatalog.GVHToPath(gvh, hooks.HandlerName(hook))] = HookName(hook)
	}
	gvh, err := cat.GroupVersionHook(runtimehooksv1.Discovery)
	if err != nil {
		return nil, fmt.Errorf("finding the path of discovery: %w", err)
	}
	paths[runtimecatalog.GVHToPath(gvh, "")] = HookName(runtimehooksv1.Discovery)

	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return nil, fmt.Errorf("gathering the webhook metrics: %w", err)
	}
	calls := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "webhook" {
					continue
				}
				if hook, ok := paths[strings.TrimSuffix(l.GetValue(), "/")]; ok {
					calls[hook] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return calls, nil
}

// FormatCalls prints hook calls as sorted hook=count pairs.
func FormatCalls(calls map[string]float64) string {
	var parts []string
	for hook, n := range calls {
		parts = append(parts, fmt.Sprintf("%s=%v", hook, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
