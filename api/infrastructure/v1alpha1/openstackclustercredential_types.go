package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OpenStackClusterCredentialFinalizer holds the object until its application credentials are
// revoked in Keystone.
const OpenStackClusterCredentialFinalizer = "openstackclustercredential.infrastructure.clusterstack.x-k8s.io"

// OpenStackClusterCredentialSpec is the desired state of an OpenStackClusterCredential. The
// operator writes it from the Cluster and its ClusterStack; users do not.
type OpenStackClusterCredentialSpec struct {
	// clusterName is the Cluster (in the same namespace) whose workload cluster gets the
	// credential. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="clusterName is immutable"
	ClusterName string `json:"clusterName"`

	// identityRef names the Secret with the OpenStack credentials that create the application
	// credentials: the Cluster's (its OpenStackCluster's identityRef). The credentials are created
	// for that Secret's user, in the project it logs in to.
	// +required
	IdentityRef *OpenStackIdentityReference `json:"identityRef"`

	// roles the credential is restricted to, by name.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	Roles []string `json:"roles"`

	// lifetime is how long each credential is valid.
	// +required
	Lifetime metav1.Duration `json:"lifetime"`

	// rotateBefore is how long before expiry a credential is replaced.
	// +required
	RotateBefore metav1.Duration `json:"rotateBefore"`

	// revokeAfter is how long a replaced credential stays valid once the workload has the new one.
	// +required
	RevokeAfter metav1.Duration `json:"revokeAfter"`
}

// ApplicationCredentialRef identifies one Keystone application credential; never its secret.
type ApplicationCredentialRef struct {
	// id is the Keystone ID.
	// +required
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`

	// name is the Keystone name, `cso-<cluster UID>-<serial>`.
	// +required
	// +kubebuilder:validation:MaxLength=255
	Name string `json:"name"`

	// expiresAt is when Keystone stops accepting it.
	// +required
	ExpiresAt metav1.Time `json:"expiresAt"`

	// roles it is restricted to.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=255
	Roles []string `json:"roles,omitempty"`
}

// OpenStackClusterCredentialStatus is the observed state of an OpenStackClusterCredential.
type OpenStackClusterCredentialStatus struct {
	// conditions describe the credential; `Ready` summarises them with kstatus semantics.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec that the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// current is the credential the workload cluster is to use. Unset until the first one exists.
	// +optional
	Current *ApplicationCredentialRef `json:"current,omitempty"`

	// previous is the credential current replaced; it is revoked revokeAfter after the workload
	// cluster got current. Unset when there is none left to revoke.
	// +optional
	Previous *ApplicationCredentialRef `json:"previous,omitempty"`

	// serial is the number in the name of the newest credential created.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Serial int64 `json:"serial,omitempty"`

	// workloadCredentialID is the ID of the credential last written into the workload cluster.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	WorkloadCredentialID string `json:"workloadCredentialID,omitempty"`

	// switchedAt is when the workload cluster got workloadCredentialID.
	// +optional
	SwitchedAt *metav1.Time `json:"switchedAt,omitempty"`
}

// OpenStackClusterCredential is the per-cluster Keystone application credential of one Cluster:
// the operator creates it for Clusters with application credentials enabled, keeps a valid
// credential in the workload cluster, rotates it before it expires and revokes it when the
// Cluster goes.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=oscc,categories=cluster-api;clusterstack-operator
// +kubebuilder:printcolumn:name="Cluster",type="string",JSONPath=".spec.clusterName"
// +kubebuilder:printcolumn:name="Credential",type="string",JSONPath=".status.current.name"
// +kubebuilder:printcolumn:name="Expires",type="date",JSONPath=".status.current.expiresAt"
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].status"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].reason"
// +kubebuilder:printcolumn:name="Message",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].message"
type OpenStackClusterCredential struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec OpenStackClusterCredentialSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status OpenStackClusterCredentialStatus `json:"status,omitempty"`
}

// GetConditions returns the conditions, for Cluster API's condition utilities.
func (r *OpenStackClusterCredential) GetConditions() []metav1.Condition {
	return r.Status.Conditions
}

// SetConditions sets the conditions, for Cluster API's condition utilities.
func (r *OpenStackClusterCredential) SetConditions(conditions []metav1.Condition) {
	r.Status.Conditions = conditions
}

// OpenStackClusterCredentialList is a list of OpenStackClusterCredentials.
//
// +kubebuilder:object:root=true
type OpenStackClusterCredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OpenStackClusterCredential `json:"items"`
}

func init() {
	objectTypes = append(objectTypes, &OpenStackClusterCredential{}, &OpenStackClusterCredentialList{})
}
