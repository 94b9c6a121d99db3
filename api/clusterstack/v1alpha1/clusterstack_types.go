package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterStackFinalizer lets the operator refuse to drop a ClusterStack while its releases are in
// use and clean up what it created.
const ClusterStackFinalizer = "clusterstack.clusterstack.x-k8s.io"

// Channel names. A version's channel follows from its form: `vN` is stable, `v0-sha.<hash>` is
// custom, `vN-<channel>.<patch>` belongs to the named pre-release channel.
const (
	// ChannelStable holds the numbered releases `v1`, `v2`, ...
	ChannelStable = "stable"
	// ChannelCustom holds hash-mode releases `v0-sha.<7 characters>`.
	ChannelCustom = "custom"
)

// ClusterStackSpec is the desired state of a ClusterStack.
//
// Cross-field rules are CEL so that a bad manifest is refused at apply time, with a message that
// says what to change, instead of failing later in a controller.
//
// +kubebuilder:validation:XValidation:rule="self.noProvider || has(self.providerRef)",message="providerRef is required unless noProvider is true: point it at an OpenStackClusterStackReleaseTemplate, or set noProvider: true"
// +kubebuilder:validation:XValidation:rule="!has(self.versions) || self.channel != 'stable' || self.versions.all(v, v.matches('^v[1-9][0-9]{0,8}$'))",message="versions of the stable channel look like v1, v2, ... with at most 9 digits (use channel: custom for v0-sha.<hash> versions)"
// +kubebuilder:validation:XValidation:rule="!has(self.versions) || self.channel != 'custom' || self.versions.all(v, v.matches('^v0-sha[.][a-z0-9]{7}$'))",message="versions of the custom channel look like v0-sha.abc1234 (seven lowercase letters or digits after 'v0-sha.')"
// +kubebuilder:validation:XValidation:rule="!has(self.versions) || self.channel in ['stable', 'custom'] || self.versions.all(v, v.matches('^v[1-9][0-9]{0,8}-' + self.channel + '[.](0|[1-9][0-9]{0,8})$'))",message="versions of a pre-release channel look like v1-<channel>.0, e.g. v1-alpha.2 in channel alpha (numbers of at most 9 digits)"
type ClusterStackSpec struct {
	// provider is the provider prefix of the release names, e.g. `openstack` in
	// `openstack-scs-1-32-v1`. Lowercase letters and digits only: a `-` would make release names
	// ambiguous. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+$')",message="provider must be lowercase letters and digits only, without '-' (it is the first part of release names like openstack-scs-1-32-v1)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="provider is immutable: create a new ClusterStack for another provider"
	Provider string `json:"provider"`

	// name is the stack name, e.g. `scs` in `openstack-scs-1-32-v1`. Lowercase letters and digits
	// only: a `-` would make release names ambiguous. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+$')",message="name must be lowercase letters and digits only, without '-' (it is the second part of release names like openstack-scs-1-32-v1)"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="name is immutable: create a new ClusterStack for another stack"
	Name string `json:"name"`

	// kubernetesVersion is the Kubernetes `<major>.<minor>` the stack is built for, e.g. `1.32`.
	// Unlike the reference, two-digit majors are accepted. Immutable: a new minor is a new
	// ClusterStack.
	// +required
	// +kubebuilder:validation:MaxLength=9
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0|[1-9][0-9]{0,8})[.](0|[1-9][0-9]{0,8})$')",message="kubernetesVersion must be <major>.<minor> without a patch or a leading 'v', e.g. 1.32"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="kubernetesVersion is immutable: create a new ClusterStack for another Kubernetes minor"
	KubernetesVersion string `json:"kubernetesVersion"`

	// channel is the release channel: `stable` (versions v1, v2, ...) or `custom` (hash versions
	// v0-sha.<hash>). This project also accepts pre-release channels `alpha`, `beta` and `rc`
	// (versions v1-alpha.0, ...). Unset means stable. Immutable.
	// +optional
	// +kubebuilder:default=stable
	// +kubebuilder:validation:Enum=stable;custom;alpha;beta;rc
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="channel is immutable: create a new ClusterStack for another channel"
	Channel string `json:"channel,omitempty"`

	// versions are the releases to provide, in dotted form (`v1`, `v0-sha.abc1234`); each must
	// belong to the channel. Unset means none besides what autoSubscribe adds.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=63
	Versions []string `json:"versions,omitempty"`

	// autoSubscribe keeps the newest release of this provider, stack and Kubernetes minor in the
	// channel available, as found at the release source. Unset means true.
	// +optional
	// +kubebuilder:default=true
	AutoSubscribe bool `json:"autoSubscribe"`

	// noProvider means the releases have no provider-specific objects (no
	// OpenStackClusterStackRelease). Unset means false.
	// +optional
	// +kubebuilder:default=false
	NoProvider bool `json:"noProvider,omitempty"`

	// providerRef points at the OpenStackClusterStackReleaseTemplate that each release's provider
	// object is made from. Required unless noProvider is true.
	// +optional
	ProviderRef *corev1.ObjectReference `json:"providerRef,omitempty"`

	// source is where this ClusterStack's releases come from. Added by this project; unset means
	// the operator-wide default source (flags and the reference's environment variables).
	// +optional
	Source *ReleaseSource `json:"source,omitempty"`

	// applicationCredentials gives every Cluster of this stack's classes its own Keystone
	// application credential in the Cluster's project, written into the workload cluster for the
	// cloud controller manager and Cinder CSI, instead of the credentials of the Cluster's
	// identityRef Secret. A Cluster's annotation `clusterstack.x-k8s.io/application-credentials`
	// (`enabled` or `disabled`) overrides `enabled`. Added by this project; unset means disabled.
	// +optional
	ApplicationCredentials *ApplicationCredentials `json:"applicationCredentials,omitempty"`
}

// ApplicationCredentialsAnnotation on a Cluster overrides ApplicationCredentials.Enabled of its
// ClusterStack: `enabled` or `disabled`.
const ApplicationCredentialsAnnotation = "clusterstack.x-k8s.io/application-credentials"

// ApplicationCredentials is whether and how Clusters get per-cluster application credentials.
type ApplicationCredentials struct {
	// enabled turns per-cluster application credentials on for the stack's Clusters. Unset means
	// false.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	ApplicationCredentialSettings `json:",inline"`
}

// ApplicationCredentialSettings are the roles and the lifecycle of a per-cluster application
// credential.
//
// +kubebuilder:validation:XValidation:rule="!has(self.lifetime) || !has(self.rotateBefore) || duration(self.rotateBefore) < duration(self.lifetime)",message="rotateBefore must be shorter than lifetime, or every new credential would be rotated at once"
// +kubebuilder:validation:XValidation:rule="!has(self.rotateBefore) || !has(self.revokeAfter) || duration(self.revokeAfter) < duration(self.rotateBefore)",message="revokeAfter must be shorter than rotateBefore, so that the old credential is revoked before it expires and the workload never holds an expired one"
type ApplicationCredentialSettings struct {
	// roles the credential is restricted to, by name; they must be roles the identityRef's user
	// has on the project. Unset means `member`, what the cloud controller manager and Cinder CSI
	// need (add `load-balancer_member` on clouds that enforce Octavia's roles).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	Roles []string `json:"roles,omitempty"`

	// lifetime is how long a credential is valid (its Keystone expires_at). Unset means 2160h
	// (90 days).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="lifetime must be at least 1m"
	Lifetime *metav1.Duration `json:"lifetime,omitempty"`

	// rotateBefore is how long before its expiry a credential is replaced by a new one. Unset
	// means 720h (30 days).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="rotateBefore must be positive"
	RotateBefore *metav1.Duration `json:"rotateBefore,omitempty"`

	// revokeAfter is how long the replaced credential stays valid after the workload cluster has
	// the new one, so that its components can switch (kubelet refreshes mounted Secrets within
	// about a minute; components that read their configuration only at start need a restart).
	// Unset means 24h.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="revokeAfter must not be negative"
	RevokeAfter *metav1.Duration `json:"revokeAfter,omitempty"`
}

// ReleaseSource says where releases are fetched from: exactly one of oci, github or local.
//
// +kubebuilder:validation:XValidation:rule="[has(self.oci), has(self.github), has(self.local)].filter(x, x).size() == 1",message="set exactly one of source.oci, source.github or source.local"
// +kubebuilder:validation:XValidation:rule="!has(self.local) || !has(self.secretRef)",message="source.secretRef is not used with source.local: remove it"
type ReleaseSource struct {
	// oci fetches releases from an OCI registry: one artifact per release, tagged with the release
	// name.
	// +optional
	OCI *OCISource `json:"oci,omitempty"`

	// github fetches releases from the GitHub releases of a repository: one GitHub release per
	// release name, every file an asset.
	// +optional
	GitHub *GitHubSource `json:"github,omitempty"`

	// local reads releases from a directory on the operator's file system laid out as
	// `<path>/<release name>/<files>`, for air-gapped installations and development.
	// +optional
	Local *LocalSource `json:"local,omitempty"`

	// secretRef names a Secret in the ClusterStack's namespace with credentials for the source:
	// `username` and `password`, or `token`. Unset means anonymous access.
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`

	// checkInterval is how often the source is asked for new releases (autoSubscribe). Unset
	// means the operator-wide default (5 minutes unless configured).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('30s')",message="checkInterval must be at least 30s, so that the source is not polled in a tight loop"
	CheckInterval *metav1.Duration `json:"checkInterval,omitempty"`
}

// OCISource is an OCI repository holding one artifact per release.
type OCISource struct {
	// registry is the registry host, with an optional port, e.g. `registry.example.org`.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z0-9.-]+(:[0-9]+)?$')",message="registry must be a host name with an optional port, without a scheme or path, e.g. registry.example.org:5000"
	Registry string `json:"registry"`

	// repository is the repository path inside the registry, e.g. `kaas/cluster-stacks`.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$')",message="repository must be a lowercase OCI repository path such as kaas/cluster-stacks"
	Repository string `json:"repository"`

	// insecure talks plain HTTP to the registry. Unset means HTTPS.
	// +optional
	Insecure bool `json:"insecure,omitempty"`
}

// GitHubSource is a GitHub repository whose releases are cluster-stack releases.
type GitHubSource struct {
	// owner is the GitHub organisation or user, e.g. `SovereignCloudStack`.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=39
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$')",message="owner must be a GitHub organisation or user name"
	Owner string `json:"owner"`

	// repository is the repository name, e.g. `cluster-stacks`.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9._-]+$')",message="repository must be a GitHub repository name (letters, digits, '.', '_', '-')"
	Repository string `json:"repository"`

	// apiURL is the GitHub API base URL, for GitHub Enterprise. Unset means the public GitHub API.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="apiURL must be an http(s) URL, e.g. https://github.example.org/api/v3"
	APIURL string `json:"apiURL,omitempty"`
}

// LocalSource is a directory of releases on the operator's file system.
type LocalSource struct {
	// path is an absolute directory path inside the operator's container.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="path must be absolute, e.g. /releases"
	Path string `json:"path"`
}

// SecretReference names a Secret in the namespace of the referring object.
type SecretReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ClusterStackReleaseSummary is the state of one release of a ClusterStack, as in the reference.
type ClusterStackReleaseSummary struct {
	// name of the ClusterStackRelease.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// ready is true when the release's ClusterClass can be used.
	// +optional
	Ready bool `json:"ready"`

	// phase is a short word for where the release is (e.g. `Ready`, `Progressing`, `Failed`).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Phase string `json:"phase,omitempty"`

	// message says what the release is waiting for or what failed.
	// +optional
	// +kubebuilder:validation:MaxLength=10240
	Message string `json:"message,omitempty"`
}

// ClusterStackStatus is the observed state of a ClusterStack.
type ClusterStackStatus struct {
	// conditions describe the ClusterStack; `Ready` summarises them. Condition semantics follow
	// kstatus (`Reconciling`, `Stalled`), so GitOps tools read health without custom code.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec that the conditions describe. Added by this
	// project.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// latestRelease is the newest release of this stack that is ready.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	LatestRelease string `json:"latestRelease,omitempty"`

	// summary has one entry per release of this ClusterStack.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1000
	Summary []ClusterStackReleaseSummary `json:"summary,omitempty"`

	// usableVersions lists the ready versions, comma-separated, as in the reference.
	// +optional
	// +kubebuilder:validation:MaxLength=10240
	UsableVersions string `json:"usableVersions,omitempty"`
}

// ClusterStack asks for the releases of one cluster stack (provider, stack name, Kubernetes minor,
// channel) to be available in its namespace as ClusterClasses.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=csk,categories=cluster-api;clusterstack-operator
// +kubebuilder:printcolumn:name="Provider",type="string",JSONPath=".spec.provider"
// +kubebuilder:printcolumn:name="ClusterStack",type="string",JSONPath=".spec.name"
// +kubebuilder:printcolumn:name="K8s",type="string",JSONPath=".spec.kubernetesVersion"
// +kubebuilder:printcolumn:name="Channel",type="string",JSONPath=".spec.channel"
// +kubebuilder:printcolumn:name="Autosubscribe",type="boolean",JSONPath=".spec.autoSubscribe"
// +kubebuilder:printcolumn:name="Usable",type="string",JSONPath=".status.usableVersions"
// +kubebuilder:printcolumn:name="Latest",type="string",JSONPath=".status.latestRelease"
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].status"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].reason"
// +kubebuilder:printcolumn:name="Message",type="string",priority=1,JSONPath=".status.conditions[?(@.type=='Ready')].message"
type ClusterStack struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec ClusterStackSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status ClusterStackStatus `json:"status,omitempty"`
}

// GetConditions returns the conditions, for Cluster API's condition utilities.
func (c *ClusterStack) GetConditions() []metav1.Condition { return c.Status.Conditions }

// SetConditions sets the conditions, for Cluster API's condition utilities.
func (c *ClusterStack) SetConditions(conditions []metav1.Condition) { c.Status.Conditions = conditions }

// ClusterStackList is a list of ClusterStacks.
//
// +kubebuilder:object:root=true
type ClusterStackList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterStack `json:"items"`
}

func init() {
	objectTypes = append(objectTypes, &ClusterStack{}, &ClusterStackList{})
}
