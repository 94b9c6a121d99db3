package addon

// ClusterAddonPrefix prefixes the name of a Cluster's ClusterAddon: `cluster-addon-<cluster>`.
const ClusterAddonPrefix = "cluster-addon-"

// ClusterAddonName returns the name of the ClusterAddon of the Cluster named cluster.
func ClusterAddonName(cluster string) string { return ClusterAddonPrefix + cluster }
