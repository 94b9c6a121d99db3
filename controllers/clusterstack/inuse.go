package clusterstack

import (
	"context"
	"fmt"
	"sort"

	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// releaseOfCluster returns the release whose ClusterClass the Cluster's topology uses. The class
// name is parsed rather than compared as a string: hash versions are dotted in ClusterClass
// names (v0-sha.abc1234) and dashed in release names (v0-sha-abc1234), which is where the
// reference's in-use check went wrong.
func releaseOfCluster(c *clusterv1.Cluster) (name.Release, bool) {
	ref := c.Spec.Topology.ClassRef
	if ref.Name == "" || (ref.Namespace != "" && ref.Namespace != c.Namespace) {
		return name.Release{}, false
	}
	n, err := name.ParseClusterClassName(ref.Name)
	if err != nil {
		return name.Release{}, false
	}
	return n, true
}

// clustersByRelease returns, per release name (dashed form), the sorted names of the Clusters of
// namespace whose topology uses the release's ClusterClass.
func clustersByRelease(ctx context.Context, c client.Reader, namespace string) (map[string][]string, error) {
	var list clusterv1.ClusterList
	if err := c.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing the Clusters of namespace %s: %w", namespace, err)
	}
	out := map[string][]string{}
	for i := range list.Items {
		if n, ok := releaseOfCluster(&list.Items[i]); ok {
			out[n.String()] = append(out[n.String()], list.Items[i].Name)
		}
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out, nil
}
