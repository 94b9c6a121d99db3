package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OpenStackNodeImageReleaseFinalizer holds a node image object until its Glance image is deleted
// or deliberately kept. The name is the reference's.
const OpenStackNodeImageReleaseFinalizer = "openstacknodeimagerelease.infrastructure.clusterstack.x-k8s.io"

// DeletionPolicy says what happens to the Glance image when its OpenStackNodeImageRelease goes.
// +kubebuilder:validation:Enum=delete;keep
type DeletionPolicy string

const (
	// DeletionPolicyDelete deletes the Glance image, unless a Cluster's machines still use it.
	DeletionPolicyDelete DeletionPolicy = "delete"
	// DeletionPolicyKeep leaves the Glance image in place.
	DeletionPolicyKeep DeletionPolicy = "keep"
)

// HashAlgorithm is a digest algorithm for node image integrity.
// +kubebuilder:validation:Enum=sha256;sha512
type HashAlgorithm string

const (
	// HashAlgorithmSHA256 is SHA-256 (64 hex characters).
	HashAlgorithmSHA256 HashAlgorithm = "sha256"
	// HashAlgorithmSHA512 is SHA-512 (128 hex characters).
	HashAlgorithmSHA512 HashAlgorithm = "sha512"
)

// ImageHash is the expected digest of the image file at the URL.
//
// +kubebuilder:validation:XValidation:rule="self.algorithm != 'sha256' || self.value.size() == 64",message="a sha256 hash value has 64 hexadecimal characters"
// +kubebuilder:validation:XValidation:rule="self.algorithm != 'sha512' || self.value.size() == 128",message="a sha512 hash value has 128 hexadecimal characters"
type ImageHash struct {
	// algorithm of the digest.
	// +required
	Algorithm HashAlgorithm `json:"algorithm"`

	// value is the lowercase hexadecimal digest.
	// +required
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9a-f]+$')",message="hash value must be lowercase hexadecimal"
	Value string `json:"value"`
}

// ImageCreateOpts are the Glance fields of the image, with Glance's snake_case wire names as in
// the reference and in node-images.yaml.
type ImageCreateOpts struct {
	// name of the Glance image; machines find the image by it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	Name string `json:"name"`

	// id is the UUID to create the image with. Unset means Glance chooses one.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$')",message="id must be a UUID, e.g. 1bea47ed-f6a9-463b-b423-14b9cca9ad27"
	ID string `json:"id,omitempty"`

	// visibility of the image. Unset means Glance's default (private).
	// +optional
	// +kubebuilder:validation:Enum=public;private;shared;community
	Visibility *string `json:"visibility,omitempty"`

	// os_hidden hides the image from default image lists. Unset means false.
	// +optional
	Hidden *bool `json:"os_hidden,omitempty"`

	// tags of the image.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:items:MaxLength=255
	Tags []string `json:"tags,omitempty"`

	// container_format of the image. Unset means Glance's default.
	// +optional
	// +kubebuilder:validation:Enum=ami;ari;aki;bare;ovf;ova;docker;compressed
	ContainerFormat string `json:"container_format,omitempty"`

	// disk_format of the image. Unset means Glance's default.
	// +optional
	// +kubebuilder:validation:Enum=ami;ari;aki;vhd;vhdx;vmdk;raw;qcow2;vdi;iso;ploop
	DiskFormat string `json:"disk_format,omitempty"`

	// min_disk is the disk size in GB the image needs. Unset means 0.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinDisk int `json:"min_disk,omitempty"`

	// min_ram is the RAM in MB the image needs. Unset means 0.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinRAM int `json:"min_ram,omitempty"`

	// protected images cannot be deleted. Unset means false.
	// +optional
	Protected *bool `json:"protected,omitempty"`

	// properties are extra image properties (string values), e.g. `os_distro`.
	// +optional
	// +kubebuilder:validation:MaxProperties=128
	Properties map[string]string `json:"properties,omitempty"`
}

// NodeImage is one node image: where its file is and how to create it in Glance.
type NodeImage struct {
	// url of the image file (http or https).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="url must be an http(s) URL of the image file, e.g. https://example.org/ubuntu-capi-image-v1.32.5.qcow2"
	URL string `json:"url"`

	// createOpts are the Glance fields of the image.
	// +required
	CreateOpts *ImageCreateOpts `json:"createOpts"`

	// hash is the expected digest of the file at url. When set, the operator downloads the file,
	// verifies it while uploading it to Glance, and refuses a mismatch. Added by this project;
	// unset means no integrity check (Glance may then fetch the URL itself).
	// +optional
	Hash *ImageHash `json:"hash,omitempty"`
}

// OpenStackNodeImageReleaseSpec is the desired state of an OpenStackNodeImageRelease.
type OpenStackNodeImageReleaseSpec struct {
	// identityRef names the Secret with the OpenStack credentials of the project the image goes
	// into.
	// +required
	IdentityRef *OpenStackIdentityReference `json:"identityRef"`

	// image says where the image file is and how to create it in Glance.
	// +required
	Image *NodeImage `json:"image"`

	// deletionPolicy says what happens to the Glance image when this object is deleted. Added by
	// this project; unset means `delete` for an image this operator created and `keep` for one it
	// found already there.
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// OpenStackNodeImageReleaseStatus is the observed state of an OpenStackNodeImageRelease.
type OpenStackNodeImageReleaseStatus struct {
	// conditions describe the image; `Ready` summarises them with kstatus semantics.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec that the conditions describe. Added by this
	// project.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// imageID is the Glance image ID, recorded right after the image is created or found. Added by
	// this project.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ImageID string `json:"imageID,omitempty"`

	// imageStatus is the last seen Glance status of the image (queued, importing, active, ...).
	// Added by this project.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	ImageStatus string `json:"imageStatus,omitempty"`

	// createdImage is true when this operator created the Glance image (then an unset
	// deletionPolicy means delete); false when it found the image already there. Added by this
	// project.
	// +optional
	CreatedImage bool `json:"createdImage,omitempty"`

	// transferAttempts counts the attempts to bring the image's bytes into Glance (web-download
	// imports or uploads) that were started for the current image; bounded, then the object is
	// Stalled. Unset means none yet. Added by this project.
	// +optional
	// +kubebuilder:validation:Minimum=0
	TransferAttempts int32 `json:"transferAttempts,omitempty"`

	// transferStartedAt is when the running web-download import started; unset when none runs.
	// An import running much longer than expected counts as failed. Added by this project.
	// +optional
	TransferStartedAt *metav1.Time `json:"transferStartedAt,omitempty"`

	// retryAt is the earliest time the next transfer attempt starts after a failed one (backoff).
	// Unset means no wait. Added by this project.
	// +optional
	RetryAt *metav1.Time `json:"retryAt,omitempty"`

	// ready is true when the image is active in Glance; kept for tools written against the
	// reference.
	// +optional
	Ready bool `json:"ready"`
}

// OpenStackNodeImageRelease is one node image in one OpenStack project: the operator makes sure
// it exists in Glance. Releases sharing a node-image version share it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=osnir,categories=cluster-api;clusterstack-operator
// +kubebuilder:printcolumn:name="Image",type="string",JSONPath=".spec.image.createOpts.name"
// +kubebuilder:printcolumn:name="ID",type="string",JSONPath=".status.imageID"
// +kubebuilder:printcolumn:name="Glance",type="string",JSONPath=".status.imageStatus"
// +kubebuilder:printcolumn:name="Ready",type="boolean",JSONPath=".status.ready"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].reason"
// +kubebuilder:printcolumn:name="Message",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].message"
type OpenStackNodeImageRelease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec OpenStackNodeImageReleaseSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status OpenStackNodeImageReleaseStatus `json:"status,omitempty"`
}

// GetConditions returns the conditions, for Cluster API's condition utilities.
func (r *OpenStackNodeImageRelease) GetConditions() []metav1.Condition {
	return r.Status.Conditions
}

// SetConditions sets the conditions, for Cluster API's condition utilities.
func (r *OpenStackNodeImageRelease) SetConditions(conditions []metav1.Condition) {
	r.Status.Conditions = conditions
}

// OpenStackNodeImageReleaseList is a list of OpenStackNodeImageReleases.
//
// +kubebuilder:object:root=true
type OpenStackNodeImageReleaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OpenStackNodeImageRelease `json:"items"`
}

func init() {
	objectTypes = append(objectTypes, &OpenStackNodeImageRelease{}, &OpenStackNodeImageReleaseList{})
}
