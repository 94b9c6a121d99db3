package addon

import (
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// ClusterAddonPrefix prefixes the name of a Cluster's ClusterAddon: `cluster-addon-<cluster>`.
const ClusterAddonPrefix = "cluster-addon-"

// ClusterAddonName returns the name of the ClusterAddon of the Cluster named cluster.
func ClusterAddonName(cluster string) string { return ClusterAddonPrefix + cluster }

// ReleaseOf returns the release a Cluster's class belongs to, and false when the Cluster has no
// topology or its class is not a cluster-stack ClusterClass: such Clusters are never touched.
func ReleaseOf(cluster *clusterv1.Cluster) (name.Release, bool) {
	class := cluster.Spec.Topology.ClassRef.Name
	if class == "" {
		return name.Release{}, false
	}
	n, err := name.ParseClusterClassName(class)
	if err != nil {
		return name.Release{}, false
	}
	return n, true
}
