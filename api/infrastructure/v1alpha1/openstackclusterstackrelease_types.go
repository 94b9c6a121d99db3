package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OpenStackClusterStackReleaseFinalizer holds the provider object of a release until the node
// images it asked for are released. The reference's name,
// "openstackclusterstackrelease.infrastructure.clusterstack.x-k8s.io", is 65 bytes without a
// "/" and the API server refuses it (a finalizer's name part has at most 63), so no stored
// object can carry it; this one is the same words in prefix/name form.
const OpenStackClusterStackReleaseFinalizer = "infrastructure.clusterstack.x-k8s.io/openstackclusterstackrelease"

// OpenStackIdentityReference names the Secret with the OpenStack credentials, in the namespace of
// the referring object. The Secret holds `clouds.yaml` (required), `cloudName` (optional, default
// `openstack`) and `cacert` (optional PEM), as for the OpenStack Cluster API provider.
type OpenStackIdentityReference struct {
	// kind of the referenced object; only `Secret` is supported. Unset means Secret.
	// +optional
	// +kubebuilder:default=Secret
	// +kubebuilder:validation:Enum=Secret
	Kind string `json:"kind,omitempty"`

	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// OpenStackClusterStackReleaseSpec is the desired state of an OpenStackClusterStackRelease.
type OpenStackClusterStackReleaseSpec struct {
	// identityRef names the Secret with the OpenStack credentials used to upload the release's node
	// images. Unset means the Secret `openstack`.
	// +optional
	// +kubebuilder:default={kind: Secret, name: openstack}
	IdentityRef *OpenStackIdentityReference `json:"identityRef,omitempty"`
}

// OpenStackClusterStackReleaseStatus is the observed state of an OpenStackClusterStackRelease.
type OpenStackClusterStackReleaseStatus struct {
	// conditions describe the release's node images; `Ready` summarises them with kstatus
	// semantics. `CloudCapable` says whether the cloud of identityRef has what the release's
	// ClusterClass needs by default (load balancer, flavors, external network, image formats,
	// quota); it does not affect `Ready`.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec that the conditions describe. Added by this
	// project.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// ready is true when every node image of the release is active in Glance (or the release has
	// none); kept for tools written against the reference.
	// +optional
	Ready bool `json:"ready"`
}

// OpenStackClusterStackRelease is the OpenStack part of one cluster-stack release: it makes sure
// the release's node images exist in Glance. Created from an OpenStackClusterStackReleaseTemplate
// by the ClusterStack controller, named like the release.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=oscsr,categories=cluster-api;clusterstack-operator
// +kubebuilder:printcolumn:name="Ready",type="boolean",JSONPath=".status.ready"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].reason"
// +kubebuilder:printcolumn:name="Cloud",type="string",JSONPath=".status.conditions[?(@.type=='CloudCapable')].status"
// +kubebuilder:printcolumn:name="Message",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].message"
type OpenStackClusterStackRelease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +optional
	Spec OpenStackClusterStackReleaseSpec `json:"spec,omitempty"`

	// status is the observed state.
	// +optional
	Status OpenStackClusterStackReleaseStatus `json:"status,omitempty"`
}

// GetConditions returns the conditions, for Cluster API's condition utilities.
func (r *OpenStackClusterStackRelease) GetConditions() []metav1.Condition {
	return r.Status.Conditions
}

// SetConditions sets the conditions, for Cluster API's condition utilities.
func (r *OpenStackClusterStackRelease) SetConditions(conditions []metav1.Condition) {
	r.Status.Conditions = conditions
}

// OpenStackClusterStackReleaseList is a list of OpenStackClusterStackReleases.
//
// +kubebuilder:object:root=true
type OpenStackClusterStackReleaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OpenStackClusterStackRelease `json:"items"`
}

// OpenStackClusterStackReleaseTemplateResource is the template's content.
type OpenStackClusterStackReleaseTemplateResource struct {
	// spec is copied into each OpenStackClusterStackRelease made from the template.
	// +required
	Spec OpenStackClusterStackReleaseSpec `json:"spec"`
}

// OpenStackClusterStackReleaseTemplateSpec is the desired state of an
// OpenStackClusterStackReleaseTemplate.
type OpenStackClusterStackReleaseTemplateSpec struct {
	// template is what each release's OpenStackClusterStackRelease is made from.
	// +required
	Template OpenStackClusterStackReleaseTemplateResource `json:"template"`
}

// OpenStackClusterStackReleaseTemplate is what a ClusterStack's providerRef points at: the
// OpenStack settings (credentials) for every release of the stack.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=oscsrt,categories=cluster-api;clusterstack-operator
// +kubebuilder:printcolumn:name="Identity",type="string",JSONPath=".spec.template.spec.identityRef.name"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
type OpenStackClusterStackReleaseTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec OpenStackClusterStackReleaseTemplateSpec `json:"spec"`
}

// OpenStackClusterStackReleaseTemplateList is a list of OpenStackClusterStackReleaseTemplates.
//
// +kubebuilder:object:root=true
type OpenStackClusterStackReleaseTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OpenStackClusterStackReleaseTemplate `json:"items"`
}

func init() {
	objectTypes = append(objectTypes,
		&OpenStackClusterStackRelease{}, &OpenStackClusterStackReleaseList{},
		&OpenStackClusterStackReleaseTemplate{}, &OpenStackClusterStackReleaseTemplateList{},
	)
}
