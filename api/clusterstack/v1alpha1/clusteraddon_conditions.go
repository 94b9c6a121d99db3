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
	// WaitingForClusterReason (Reconciling) means a values template of the release cannot be
	// evaluated on the Cluster yet (e.g. it reads spec.controlPlaneEndpoint before the Cluster
	// has one); it is tried again as the Cluster progresses.
	WaitingForClusterReason = "WaitingForCluster"
	// DependencyUnavailableReason (Reconciling) means a chart repository that an addon chart's
	// dependencies come from does not answer; retried.
	DependencyUnavailableReason = "DependencyUnavailable"
	// DependencyUnresolvableReason (Stalled) means an addon chart's dependency cannot be resolved
	// as declared: no matching version, not in the repository, refused credentials, a digest that
	// does not match. The message names the chart and the repository.
	DependencyUnresolvableReason = "DependencyUnresolvable"
)
