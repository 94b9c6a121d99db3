// Package controllers holds the operator's reconcile loops, one sub-package per area:
// clusterstack (ClusterStack, ClusterStackRelease), openstack (node images in Glance) and
// clusteraddon (workload-cluster addons and Cluster API lifecycle hooks). Logic that is not a
// reconcile loop lives in the single-purpose packages under internal/.
//
// Permissions every controller needs; each reconciler declares its own beside its code.
//
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
package controllers
