package v1alpha1

// Reasons of the ClusterAddon's conditions. They are part of the API: tools may match on them.
const (
	// KubeconfigMissingReason (ClusterReachable) means the Cluster's `<cluster>-kubeconfig` Secret
	// or its `value` key does not exist yet.
	KubeconfigMissingReason = "KubeconfigMissing"
	// KubeconfigInvalidReason (ClusterReachable) means the kubeconfig Secret holds no usable
	// kubeconfig.
	KubeconfigInvalidReason = "KubeconfigInvalid"
	// ClusterUnreachableReason (ClusterReachable) means the workload cluster's API server does not
	// answer.
	ClusterUnreachableReason = "ClusterUnreachable"
	// ControlPlaneNotInitializedReason means the addons wait for the Cluster's control plane.
	ControlPlaneNotInitializedReason = "ControlPlaneNotInitialized"
	// ReleaseNotAvailableReason means the release of the Cluster's class is not available (yet).
	ReleaseNotAvailableReason = "ReleaseNotAvailable"
	// WaitingForPreConditionReason means a stage waits for its waitForPreCondition.
	WaitingForPreConditionReason = "WaitingForPreCondition"
	// WaitingForPostConditionReason means a stage waits for its waitForPostCondition.
	WaitingForPostConditionReason = "WaitingForPostCondition"
)
