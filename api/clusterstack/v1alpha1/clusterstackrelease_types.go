package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterStackReleaseFinalizer holds a release until its ClusterClass and templates are removed
// and no Cluster uses it any more. The name is the reference's, so objects it created are adopted.
const ClusterStackReleaseFinalizer = "clusterstackrelease.clusterstack.x-k8s.io"

// ResourceStatus says whether an applied object matches what the release rendered.
// +kubebuilder:validation:Enum=synced;not-synced
type ResourceStatus string

const (
	// ResourceStatusSynced means the live object matches the rendered one.
	ResourceStatusSynced ResourceStatus = "synced"
	// ResourceStatusNotSynced means the object could not be applied; see its error.
	ResourceStatusNotSynced ResourceStatus = "not-synced"
)

// Resource is one object that a release or addon applied: the inventory used to re-apply, report
// and prune.
type Resource struct {
	// group of the object's API; empty for the core group.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`

	// version of the object's API as applied.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Version string `json:"version"`

	// kind of the object.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`

	// namespace of the object; empty for cluster-scoped objects.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// name of the object.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// status says whether the object is applied as rendered.
	// +optional
	Status ResourceStatus `json:"status,omitempty"`

	// error is the last apply error for this object; empty when synced.
	// +optional
	// +kubebuilder:validation:MaxLength=10240
	Error string `json:"error,omitempty"`
}

// ClusterStackReleaseSpec is the desired state of a ClusterStackRelease. The release itself is
// named by the object's name (`<provider>-<stack>-<major>-<minor>-<version>`).
type ClusterStackReleaseSpec struct {
	// providerRef points at the provider object of this release (an OpenStackClusterStackRelease).
	// Unset means the release has no provider object.
	// +optional
	ProviderRef *corev1.ObjectReference `json:"providerRef,omitempty"`
}

// ClusterStackReleaseStatus is the observed state of a ClusterStackRelease.
type ClusterStackReleaseStatus struct {
	// conditions describe the release; `Ready` summarises them with kstatus semantics.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec that the conditions describe. Added by this
	// project.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// resources is the inventory of objects the release applied (ClusterClass and templates).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1000
	Resources []Resource `json:"resources,omitempty"`

	// kubernetesVersion is the exact Kubernetes version the release ships, from its metadata,
	// e.g. `v1.32.5`.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`

	// ready is true when the release's ClusterClass can be used; kept for tools written against
	// the reference. The `Ready` condition carries the reason.
	// +optional
	Ready bool `json:"ready"`
}

// ClusterStackRelease is one release of a cluster stack made available in its namespace: its
// ClusterClass, the templates it references and its provider object. Created by the ClusterStack
// controller.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cskr,categories=cluster-api;clusterstack-operator
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]+-[a-z0-9]+-(0|[1-9][0-9]{0,8})-(0|[1-9][0-9]{0,8})-v(0|[1-9][0-9]{0,8})(-[a-z][a-z0-9]*-([a-z0-9]{7}|0|[1-9][0-9]{0,8}))?$')",message="the name must be a release name <provider>-<stack>-<major>-<minor>-<version>, e.g. openstack-scs-1-32-v1 or openstack-scs-1-32-v0-sha-abc1234"
// +kubebuilder:printcolumn:name="K8s Version",type="string",JSONPath=".status.kubernetesVersion"
// +kubebuilder:printcolumn:name="Ready",type="boolean",JSONPath=".status.ready"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].reason"
// +kubebuilder:printcolumn:name="Message",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].message"
type ClusterStackRelease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +optional
	Spec ClusterStackReleaseSpec `json:"spec,omitempty"`

	// status is the observed state.
	// +optional
	Status ClusterStackReleaseStatus `json:"status,omitempty"`
}

// GetConditions returns the conditions, for Cluster API's condition utilities.
func (r *ClusterStackRelease) GetConditions() []metav1.Condition { return r.Status.Conditions }

// SetConditions sets the conditions, for Cluster API's condition utilities.
func (r *ClusterStackRelease) SetConditions(conditions []metav1.Condition) {
	r.Status.Conditions = conditions
}

// ClusterStackReleaseList is a list of ClusterStackReleases.
//
// +kubebuilder:object:root=true
type ClusterStackReleaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterStackRelease `json:"items"`
}

func init() {
	objectTypes = append(objectTypes, &ClusterStackRelease{}, &ClusterStackReleaseList{})
}
