package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterAddonFinalizer holds a ClusterAddon until the addon objects it applied are handled. The
// name is the reference's, so objects it created are adopted.
const ClusterAddonFinalizer = "clusteraddon.clusterstack.x-k8s.io"

// Lifecycle hooks a ClusterAddon can be working on.
const (
	// HookAfterControlPlaneInitialized installs the addons of a new Cluster.
	HookAfterControlPlaneInitialized = "AfterControlPlaneInitialized"
	// HookBeforeClusterUpgrade installs the addons of the release a Cluster upgrades to.
	HookBeforeClusterUpgrade = "BeforeClusterUpgrade"
)

// StageAction is what a stage of clusteraddon.yaml does with its chart.
// +kubebuilder:validation:Enum=apply;delete
type StageAction string

const (
	// StageActionApply applies the chart's objects.
	StageActionApply StageAction = "apply"
	// StageActionDelete deletes the chart's objects.
	StageActionDelete StageAction = "delete"
)

// StagePhase is where a stage is. The values are the reference's.
// +kubebuilder:validation:Enum=Pending;waitingForPreCondition;applyingOrDeleting;waitingForPostCondition;done
type StagePhase string

const (
	// StagePhasePending means the stage has not started.
	StagePhasePending StagePhase = "Pending"
	// StagePhaseWaitingForPreCondition means the stage waits for its waitForPreCondition.
	StagePhaseWaitingForPreCondition StagePhase = "waitingForPreCondition"
	// StagePhaseApplyingOrDeleting means the stage applies or deletes its objects.
	StagePhaseApplyingOrDeleting StagePhase = "applyingOrDeleting"
	// StagePhaseWaitingForPostCondition means the stage waits for its waitForPostCondition.
	StagePhaseWaitingForPostCondition StagePhase = "waitingForPostCondition"
	// StagePhaseDone means the stage finished.
	StagePhaseDone StagePhase = "done"
)

// ClusterAddonSpec is the desired state of a ClusterAddon.
type ClusterAddonSpec struct {
	// clusterStack is the ClusterClass name whose addons were last applied. Unset means none yet.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClusterStack string `json:"clusterStack,omitempty"`

	// version is the addon version last applied. Unset means none yet.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Version string `json:"version,omitempty"`

	// hook is the lifecycle hook currently being worked on. Empty means none.
	// +optional
	// +kubebuilder:validation:Enum="";AfterControlPlaneInitialized;BeforeClusterUpgrade
	Hook string `json:"hook,omitempty"`

	// clusterRef points at the Cluster this ClusterAddon belongs to. Its name and kind are
	// immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self.name == oldSelf.name && self.kind == oldSelf.kind",message="clusterRef name and kind are immutable: a ClusterAddon belongs to one Cluster; delete it and let the operator create a new one"
	ClusterRef *corev1.ObjectReference `json:"clusterRef"`
}

// StageStatus is the progress of one stage of clusteraddon.yaml.
type StageStatus struct {
	// name is the stage's chart name, e.g. `cni`.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// action is what the stage does with its chart.
	// +optional
	Action StageAction `json:"action,omitempty"`

	// phase is where the stage is.
	// +optional
	Phase StagePhase `json:"phase,omitempty"`
}

// ClusterAddonStatus is the observed state of a ClusterAddon.
type ClusterAddonStatus struct {
	// conditions describe the addons; `Ready` summarises them with kstatus semantics.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec that the conditions describe. Added by this
	// project.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// resources is the inventory of objects applied into the workload cluster.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10000
	Resources []Resource `json:"resources,omitempty"`

	// stages is the progress of the stages of the hook being worked on.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	Stages []StageStatus `json:"stages,omitempty"`

	// ready is true when the addons of the current release are applied; kept for tools written
	// against the reference. The `Ready` condition carries the reason.
	// +optional
	Ready bool `json:"ready"`
}

// ClusterAddon tracks the addons (CNI, cloud controller manager, CSI, metrics) installed in one
// workload Cluster. Named `cluster-addon-<cluster name>`, owned by the Cluster, created by the
// operator.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=caddon,categories=cluster-api;clusterstack-operator
// +kubebuilder:printcolumn:name="Cluster",type="string",JSONPath=".spec.clusterRef.name"
// +kubebuilder:printcolumn:name="Hook",type="string",JSONPath=".spec.hook"
// +kubebuilder:printcolumn:name="Ready",type="boolean",JSONPath=".status.ready"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Reason",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].reason"
// +kubebuilder:printcolumn:name="Message",type="string",JSONPath=".status.conditions[?(@.type=='Ready')].message"
type ClusterAddon struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec ClusterAddonSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status ClusterAddonStatus `json:"status,omitempty"`
}

// GetConditions returns the conditions, for Cluster API's condition utilities.
func (a *ClusterAddon) GetConditions() []metav1.Condition { return a.Status.Conditions }

// SetConditions sets the conditions, for Cluster API's condition utilities.
func (a *ClusterAddon) SetConditions(conditions []metav1.Condition) { a.Status.Conditions = conditions }

// ClusterAddonList is a list of ClusterAddons.
//
// +kubebuilder:object:root=true
type ClusterAddonList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterAddon `json:"items"`
}

func init() {
	objectTypes = append(objectTypes, &ClusterAddon{}, &ClusterAddonList{})
}
