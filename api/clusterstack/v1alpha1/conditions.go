package v1alpha1

// Condition types shared by every kind of this API. `Ready` summarises; `Reconciling` and `Stalled`
// follow kstatus ("abnormal-true" conditions), so that GitOps tools compute health without custom
// health checks: Reconciling=True while work is in progress, Stalled=True when progress needs a
// human (a bad manifest or release, wrong credentials).
const (
	// ReadyCondition summarises the object: True when everything it manages is usable.
	ReadyCondition = "Ready"
	// ReconcilingCondition is True while the controller is still working towards the spec.
	ReconcilingCondition = "Reconciling"
	// StalledCondition is True when the controller cannot make progress without a change by a user.
	StalledCondition = "Stalled"

	// ReleasesSyncedCondition (ClusterStack) is True when every desired release exists and none
	// that is no longer desired is left, and the release source answered.
	ReleasesSyncedCondition = "ReleasesSynced"
	// ReleaseAvailableCondition (ClusterStackRelease) is True when the release is fetched and
	// verified.
	ReleaseAvailableCondition = "ReleaseAvailable"
	// ResourcesAppliedCondition (ClusterStackRelease, ClusterAddon) is True when every rendered
	// object is applied as rendered.
	ResourcesAppliedCondition = "ResourcesApplied"
	// ProviderReadyCondition (ClusterStackRelease) is True when the provider object is ready.
	ProviderReadyCondition = "ProviderReady"
	// ClusterReachableCondition (ClusterAddon) is True when the workload cluster's API answers.
	ClusterReachableCondition = "ClusterReachable"
	// PausedCondition is True while the object carries the cluster.x-k8s.io/paused annotation
	// (as during `clusterctl move`), or, on a ClusterAddon, while its Cluster is paused: the
	// operator then leaves it, and what it made, alone.
	PausedCondition = "Paused"
)

// Reasons used in conditions. They are part of the API: tools may match on them.
const (
	// ReadyReason is the reason of a True Ready condition.
	ReadyReason = "Ready"
	// PausedReason is the reason of a True Paused condition.
	PausedReason = "Paused"
	// ClusterPausedReason (ClusterAddon) is the reason of a True Paused condition while the
	// ClusterAddon's Cluster is paused (spec.paused or the cluster.x-k8s.io/paused annotation).
	ClusterPausedReason = "ClusterPaused"
	// ProgressingReason means work is under way and no error stops it.
	ProgressingReason = "Progressing"
	// ReleaseSourceErrorReason means the release source could not be read.
	ReleaseSourceErrorReason = "ReleaseSourceError"
	// InvalidReleaseReason means a release failed verification or could not be rendered.
	InvalidReleaseReason = "InvalidRelease"
	// ApplyFailedReason means an object could not be applied.
	ApplyFailedReason = "ApplyFailed"
	// MissingAPIReason means the release renders a kind whose CRD is not installed.
	MissingAPIReason = "MissingAPI"
	// ForbiddenReason means the operator is not allowed (RBAC) to write some of the objects to
	// apply; nothing was applied and the message names the kinds and the permissions to grant.
	ForbiddenReason = "Forbidden"
	// ProviderNotReadyReason means the provider object is not ready yet.
	ProviderNotReadyReason = "ProviderNotReady"
	// InUseReason means an object is kept because a Cluster uses it.
	InUseReason = "InUse"
	// DeletingReason means the object is being deleted.
	DeletingReason = "Deleting"
)
