package v1alpha1

// Reasons of the conditions of OpenStackNodeImageRelease and OpenStackClusterStackRelease
// (condition types are the shared Ready, Reconciling and Stalled). They are part of the API:
// tools may match on them.
const (
	// CreatingImageReason: the Glance image record is being created.
	CreatingImageReason = "CreatingImage"
	// ImportingReason: Glance is fetching the image file itself (web-download).
	ImportingReason = "Importing"
	// UploadingReason: the operator streams the image file into Glance.
	UploadingReason = "Uploading"
	// RetryingReason: a transfer failed and will be retried after a backoff.
	RetryingReason = "Retrying"
	// ImageActiveReason: the image is active in Glance.
	ImageActiveReason = "ImageActive"
	// HashMismatchReason: the downloaded file does not have the expected hash; the image was
	// refused and its Glance record deleted.
	HashMismatchReason = "HashMismatch"
	// TransferFailedReason: bringing the bytes into Glance failed more often than allowed.
	TransferFailedReason = "TransferFailed"
	// ImageUnusableReason: Glance holds the image in a state the operator cannot fix
	// (deactivated, killed and not ours).
	ImageUnusableReason = "ImageUnusable"
	// InvalidCredentialsReason: the credentials Secret is missing, malformed or refused.
	InvalidCredentialsReason = "InvalidCredentials"
	// CloudErrorReason: Glance refused a call for a reason retrying does not fix (policy).
	CloudErrorReason = "CloudError"
	// CloudUnavailableReason: Keystone or Glance is unavailable (429, 5xx, no answer within the
	// request timeout, connection reset); the message says when the operator tries again.
	CloudUnavailableReason = "CloudUnavailable"
	// QuotaExceededReason: Glance refused the image as too large for the project's quota or the
	// cloud's limits (413); it stays so until the quota or the spec changes.
	QuotaExceededReason = "QuotaExceeded"
	// ProtectedReason: Glance refused to delete the image (protected or policy).
	ProtectedReason = "Protected"
	// ImageInUseReason: the image is not deleted because machines still use it.
	ImageInUseReason = "ImageInUse"
	// WaitingForImagesReason (OpenStackClusterStackRelease): node images are not active yet.
	WaitingForImagesReason = "WaitingForImages"
	// ReleaseUnavailableReason (OpenStackClusterStackRelease): the release files cannot be read.
	ReleaseUnavailableReason = "ReleaseUnavailable"
	// InvalidNodeImagesReason (OpenStackClusterStackRelease): node-images.yaml cannot be used.
	InvalidNodeImagesReason = "InvalidNodeImages"
	// URLRefusedReason: the image URL names an address the operator's egress policy refuses
	// (loopback, link-local, cloud metadata, private ranges); the message names the rule and the
	// manager flag that relaxes it.
	URLRefusedReason = "URLRefused"
)

// CloudCapableCondition (OpenStackClusterStackRelease) says whether the cloud of the release's
// credentials offers what the release's ClusterClass needs when a Cluster keeps its defaults:
// the load-balancer service (when the class enables the API server load balancer), the default
// flavors, the external network, the images' disk formats, and quota for one control-plane and
// one worker machine. False names what is missing; Unknown says why the cloud could not be asked.
// It does not hold Ready back: Clusters that override the defaults can still use the release.
const CloudCapableCondition = "CloudCapable"

// Reasons of CloudCapableCondition.
const (
	// CapabilitiesPresentReason: the cloud has everything the class's defaults need.
	CapabilitiesPresentReason = "CapabilitiesPresent"
	// CapabilityMissingReason: the cloud lacks something the class's defaults need; the message
	// says what.
	CapabilityMissingReason = "CapabilityMissing"
	// CapabilityCheckFailedReason: the cloud refused a read of the check (e.g. HTTP 403: the
	// credentials lack a reader role) or the class could not be rendered.
	CapabilityCheckFailedReason = "CapabilityCheckFailed"
)

// Reasons of the conditions of OpenStackClusterCredential.
const (
	// CredentialValidReason: the workload cluster holds a valid application credential.
	CredentialValidReason = "CredentialValid"
	// WaitingForClusterReason: the workload cluster cannot take the credential yet (no
	// kubeconfig, API server not answering).
	WaitingForClusterReason = "WaitingForCluster"
	// CredentialRefusedReason: Keystone refused to create the credential (a role the user does
	// not have, policy); the message says what to change.
	CredentialRefusedReason = "CredentialRefused"
	// RevokingReason: the credentials are being revoked (deletion).
	RevokingReason = "Revoking"
)
