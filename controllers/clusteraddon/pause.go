package clusteraddon

import (
	"fmt"

	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util/annotations"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// A paused Cluster (spec.paused, or the cluster.x-k8s.io/paused annotation, as `clusterctl move`
// sets them while it moves a Cluster to another management cluster) is left alone: nothing is
// created for it and nothing is applied into its workload cluster, so that the source and the
// target management cluster never both write into it.

// clusterPaused reports whether a Cluster is paused, and how, for messages.
func clusterPaused(c *clusterv1.Cluster) (bool, string) {
	switch {
	case ptr.Deref(c.Spec.Paused, false):
		return true, fmt.Sprintf("Cluster %s is paused (spec.paused): no addons are applied until it resumes", c.Name)
	case annotations.HasPaused(c):
		return true, fmt.Sprintf("Cluster %s carries the annotation %s: no addons are applied until it is removed", c.Name, clusterv1.PausedAnnotation)
	}
	return false, ""
}

// clusterPauseChanged passes the updates of a Cluster that pause or resume it. spec.paused moves
// the generation, which the other predicates pass; the annotation does not.
var clusterPauseChanged = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*clusterv1.Cluster)
		n, ok2 := e.ObjectNew.(*clusterv1.Cluster)
		if !ok1 || !ok2 {
			return false
		}
		was, _ := clusterPaused(o)
		is, _ := clusterPaused(n)
		return was != is
	},
}

// pauseAnnotationChanged passes the updates that add or remove the cluster.x-k8s.io/paused
// annotation of a ClusterAddon, which move no generation: without it, a ClusterAddon resumed by
// removing the annotation would wait for the next event of its Cluster.
var pauseAnnotationChanged = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return annotations.HasPaused(e.ObjectOld) != annotations.HasPaused(e.ObjectNew)
	},
}
