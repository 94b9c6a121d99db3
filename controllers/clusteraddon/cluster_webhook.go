package clusteraddon

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
)

// SetupWebhooks registers the Cluster defaulting and validating webhooks.
func SetupWebhooks(mgr ctrl.Manager) error {
	w := &ClusterWebhook{Client: mgr.GetAPIReader()}
	if err := ctrl.NewWebhookManagedBy(mgr, &clusterv1.Cluster{}).WithDefaulter(w).WithValidator(w).Complete(); err != nil {
		return fmt.Errorf("setting up the Cluster webhooks: %w", err)
	}
	return nil
}

// The Cluster webhooks see only Clusters whose class (or, on UPDATE, whose old class) looks like a
// cluster-stack ClusterClass name, so that with the operator down (failurePolicy Fail) the
// Clusters of every other class, and those without topology, are still admitted. The CEL regex
// accepts a superset of what name.ParseClusterClassName accepts (it does not check leading zeros,
// v0 or the hash length): a Cluster of ours is never let past unchecked, and the few extra names
// it sends are passed untouched by the webhook, which parses exactly.
// +kubebuilder:webhook:path=/mutate-cluster-x-k8s-io-v1beta2-cluster,mutating=true,failurePolicy=fail,sideEffects=None,groups=cluster.x-k8s.io,resources=clusters,verbs=create;update,versions=v1beta2,name=mcluster.clusterstack.x-k8s.io,admissionReviewVersions=v1,patch=`{"matchConditions":[{"name":"cluster-stack-class","expression":"(has(object.spec) && has(object.spec.topology) && has(object.spec.topology.classRef) && has(object.spec.topology.classRef.name) && object.spec.topology.classRef.name.matches('^[a-z][a-z0-9]*-[a-z][a-z0-9]*-[0-9]+-[0-9]+-v[0-9]+(-[a-z][a-z0-9]*[.][a-z0-9]+)?$')) || (request.operation == 'UPDATE' && has(oldObject.spec) && has(oldObject.spec.topology) && has(oldObject.spec.topology.classRef) && has(oldObject.spec.topology.classRef.name) && oldObject.spec.topology.classRef.name.matches('^[a-z][a-z0-9]*-[a-z][a-z0-9]*-[0-9]+-[0-9]+-v[0-9]+(-[a-z][a-z0-9]*[.][a-z0-9]+)?$'))"}]}`
// +kubebuilder:webhook:path=/validate-cluster-x-k8s-io-v1beta2-cluster,mutating=false,failurePolicy=fail,sideEffects=None,groups=cluster.x-k8s.io,resources=clusters,verbs=create;update,versions=v1beta2,name=vcluster.clusterstack.x-k8s.io,admissionReviewVersions=v1,patch=`{"matchConditions":[{"name":"cluster-stack-class","expression":"(has(object.spec) && has(object.spec.topology) && has(object.spec.topology.classRef) && has(object.spec.topology.classRef.name) && object.spec.topology.classRef.name.matches('^[a-z][a-z0-9]*-[a-z][a-z0-9]*-[0-9]+-[0-9]+-v[0-9]+(-[a-z][a-z0-9]*[.][a-z0-9]+)?$')) || (request.operation == 'UPDATE' && has(oldObject.spec) && has(oldObject.spec.topology) && has(oldObject.spec.topology.classRef) && has(oldObject.spec.topology.classRef.name) && oldObject.spec.topology.classRef.name.matches('^[a-z][a-z0-9]*-[a-z][a-z0-9]*-[0-9]+-[0-9]+-v[0-9]+(-[a-z][a-z0-9]*[.][a-z0-9]+)?$'))"}]}`
// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusterstackreleases,verbs=get;list;watch

// ClusterWebhook defaults and validates Clusters whose class is a cluster-stack ClusterClass.
// Every other Cluster passes untouched: the management cluster may run Clusters of other
// ClusterClasses or none at all (the reference rejects those; that is its bug).
type ClusterWebhook struct {
	// Client reads ClusterStackReleases (their status.kubernetesVersion).
	Client client.Reader
}

var (
	_ admission.Defaulter[*clusterv1.Cluster] = &ClusterWebhook{}
	_ admission.Validator[*clusterv1.Cluster] = &ClusterWebhook{}
)

// releaseKubernetesVersion returns status.kubernetesVersion of the ClusterStackRelease of a
// release; empty when it does not exist or is not known yet.
func (w *ClusterWebhook) releaseKubernetesVersion(ctx context.Context, ref resolver.Ref) (string, error) {
	n := ref.Release
	csr := &csv1alpha1.ClusterStackRelease{}
	err := w.Client.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: n.String()}, csr)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading ClusterStackRelease %s: %w", n, err)
	}
	return csr.Status.KubernetesVersion, nil
}

// Default fills spec.topology.version from the release when it is empty, so that a GitOps
// repository can name only the class.
func (w *ClusterWebhook) Default(ctx context.Context, c *clusterv1.Cluster) error {
	ref, ok := resolver.ReleaseOfCluster(c)
	if !ok || c.Spec.Topology.Version != "" {
		return nil
	}
	v, err := w.releaseKubernetesVersion(ctx, ref)
	if err != nil {
		return err
	}
	// With no version known the validator explains what is missing.
	c.Spec.Topology.Version = v
	return nil
}

// ValidateCreate checks the version against the release.
func (w *ClusterWebhook) ValidateCreate(ctx context.Context, c *clusterv1.Cluster) (admission.Warnings, error) {
	ref, ok := resolver.ReleaseOfCluster(c)
	if !ok {
		return nil, nil
	}
	return nil, w.validateVersion(ctx, c, ref)
}

// ValidateUpdate also keeps provider and stack name and lets the Kubernetes minor go up by at
// most one.
func (w *ClusterWebhook) ValidateUpdate(ctx context.Context, old, c *clusterv1.Cluster) (admission.Warnings, error) {
	oref, oldOK := resolver.ReleaseOfCluster(old)
	ref, ok := resolver.ReleaseOfCluster(c)
	on, n := oref.Release, ref.Release
	switch {
	case !oldOK && !ok:
		return nil, nil
	case oldOK && !ok:
		return nil, fmt.Errorf("spec.topology.classRef.name: %q is not a cluster-stack ClusterClass; Cluster %s uses %s of provider %q and stack %q and must keep them",
			c.Spec.Topology.ClassRef.Name, c.Name, old.Spec.Topology.ClassRef.Name, on.Provider, on.Stack)
	case oldOK && (on.Provider != n.Provider || on.Stack != n.Stack):
		return nil, fmt.Errorf("spec.topology.classRef.name: %s changes the cluster stack from %s-%s to %s-%s; provider and stack name cannot change, create a new Cluster instead",
			c.Spec.Topology.ClassRef.Name, on.Provider, on.Stack, n.Provider, n.Stack)
	case oldOK && n.Kubernetes.Major == on.Kubernetes.Major && n.Kubernetes.Minor < on.Kubernetes.Minor,
		oldOK && n.Kubernetes.Major != on.Kubernetes.Major:
		return nil, fmt.Errorf("spec.topology.classRef.name: %s would take Kubernetes from %s to %s; Kubernetes cannot be downgraded or change its major version",
			c.Spec.Topology.ClassRef.Name, on.Kubernetes, n.Kubernetes)
	case oldOK && n.Kubernetes.Minor > on.Kubernetes.Minor+1:
		return nil, fmt.Errorf("spec.topology.classRef.name: %s would take Kubernetes from %s to %s; upgrade one minor version at a time (to a %d.%d release first)",
			c.Spec.Topology.ClassRef.Name, on.Kubernetes, n.Kubernetes, on.Kubernetes.Major, on.Kubernetes.Minor+1)
	}
	return nil, w.validateVersion(ctx, c, ref)
}

// ValidateDelete allows every deletion.
func (w *ClusterWebhook) ValidateDelete(context.Context, *clusterv1.Cluster) (admission.Warnings, error) {
	return nil, nil
}

func (w *ClusterWebhook) validateVersion(ctx context.Context, c *clusterv1.Cluster, ref resolver.Ref) error {
	n := ref.Release
	want, err := w.releaseKubernetesVersion(ctx, ref)
	if err != nil {
		return err
	}
	if want == "" {
		return fmt.Errorf("spec.topology.classRef.name: the Kubernetes version of release %s is not known yet: its ClusterStackRelease in namespace %s does not exist or is not ready; add the version to the ClusterStack or wait", n, ref.Namespace)
	}
	if strings.TrimPrefix(c.Spec.Topology.Version, "v") != strings.TrimPrefix(want, "v") {
		return fmt.Errorf("spec.topology.version: %q does not match Kubernetes %s of release %s; set it to %s or leave it empty", c.Spec.Topology.Version, want, n, want)
	}
	return nil
}
