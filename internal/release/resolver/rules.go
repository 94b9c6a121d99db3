package resolver

import (
	"context"
	"fmt"
	"slices"

	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// The rules that tie Kubernetes objects to releases. Controllers and webhooks call these, never
// their own copies: a Cluster that one of them counts as a user of a release and another does
// not is a deleted ClusterClass under a running Cluster.

// Ref names one release in one namespace: the ClusterStackRelease Namespace/Release.
type Ref struct {
	Namespace string
	Release   name.Release
}

// ReleaseOfCluster returns the release whose ClusterClass the Cluster's topology uses, and false
// when the Cluster has no topology or its class is not a cluster-stack ClusterClass: such
// Clusters are never touched.
//
// The release lives where the ClusterClass does: in spec.topology.classRef.namespace, which
// Cluster API v1beta2 defaults to the Cluster's own namespace. A Cluster may use the class of
// another namespace, and then uses (and protects, and takes its addons from) that namespace's
// release.
//
// The class name is parsed rather than compared as a string: hash versions are dotted in
// ClusterClass names (v0-sha.abc1234) and dashed in release names (v0-sha-abc1234).
func ReleaseOfCluster(c *clusterv1.Cluster) (Ref, bool) {
	ref := c.Spec.Topology.ClassRef
	if ref.Name == "" {
		return Ref{}, false
	}
	n, err := name.ParseClusterClassName(ref.Name)
	if err != nil {
		return Ref{}, false
	}
	ns := ref.Namespace
	if ns == "" {
		ns = c.Namespace
	}
	return Ref{Namespace: ns, Release: n}, true
}

// ReleaseUseChanged passes the Cluster events that change which release a Cluster uses, the
// only thing of a Cluster the release rules read: its deletion, an update whose ReleaseOfCluster
// differs before and after (a class change, an upgrade), and, when creates is true, its
// creation. Cluster API writes a Cluster's status many times while it comes up and on every
// condition change after; none of those changes what the Cluster uses, and a controller that
// reconciled its releases on each would read and compare them for nothing.
func ReleaseUseChanged(creates bool) predicate.Funcs {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return creates },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, okOld := e.ObjectOld.(*clusterv1.Cluster)
			n, okNew := e.ObjectNew.(*clusterv1.Cluster)
			if !okOld || !okNew {
				return true
			}
			before, usedBefore := ReleaseOfCluster(o)
			after, usedAfter := ReleaseOfCluster(n)
			return usedBefore != usedAfter || before != after
		},
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return true },
	}
}

// ChannelOf returns the channel of cs; unset means stable, the API's default.
func ChannelOf(cs *clusterstackv1alpha1.ClusterStack) name.Channel {
	if cs.Spec.Channel == "" {
		return name.ChannelStable
	}
	return name.Channel(cs.Spec.Channel)
}

// OfStack reports whether n is a release of cs's provider, stack and Kubernetes minor, whatever
// its channel: a release cs may serve.
func OfStack(cs *clusterstackv1alpha1.ClusterStack, n name.Release) bool {
	k, err := name.ParseKubernetesMinor(cs.Spec.KubernetesVersion)
	return err == nil && n.Provider == cs.Spec.Provider && n.Stack == cs.Spec.Name && n.Kubernetes == k
}

// InChannel reports whether n is of cs's stack (OfStack) and in cs's channel: a release cs
// provides.
func InChannel(cs *clusterstackv1alpha1.ClusterStack, n name.Release) bool {
	return OfStack(cs, n) && n.Version.Channel() == ChannelOf(cs)
}

// Latest returns the newest of releases that cs provides (InChannel), and false when there is
// none or cs follows the custom channel: hash versions carry no order, so that channel has no
// newest release.
func Latest(cs *clusterstackv1alpha1.ClusterStack, releases []name.Release) (name.Release, bool) {
	if ChannelOf(cs) == name.ChannelCustom {
		return name.Release{}, false
	}
	var found []name.Release
	for _, n := range releases {
		if InChannel(cs, n) {
			found = append(found, n)
		}
	}
	if len(found) == 0 {
		return name.Release{}, false
	}
	return slices.MaxFunc(found, name.Release.Compare), true
}

// Use is the Clusters that use one release.
type Use struct {
	Release name.Release
	// Clusters are sorted: the names of the Clusters of the release's namespace, namespace/name
	// for those of other namespaces.
	Clusters []string
}

// Usage maps the dashed names of the releases of one namespace that Clusters use to their use.
type Usage map[string]Use

// ClustersByRelease returns which releases of namespace Clusters use (ReleaseOfCluster). Clusters
// of every namespace are read: a Cluster may use a class of another namespace.
func ClustersByRelease(ctx context.Context, c client.Reader, namespace string) (Usage, error) {
	var list clusterv1.ClusterList
	if err := c.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing the Clusters that may use the releases of namespace %s: %w", namespace, err)
	}
	out := Usage{}
	for i := range list.Items {
		cl := &list.Items[i]
		ref, ok := ReleaseOfCluster(cl)
		if !ok || ref.Namespace != namespace {
			continue
		}
		user := cl.Name
		if cl.Namespace != namespace {
			user = cl.Namespace + "/" + cl.Name
		}
		u := out[ref.Release.String()]
		u.Release = ref.Release
		u.Clusters = append(u.Clusters, user)
		out[ref.Release.String()] = u
	}
	for _, u := range out {
		slices.Sort(u.Clusters)
	}
	return out, nil
}
