package workloadcluster

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"weak"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// missRefresh is how old a group version's discovery may be before a kind that is not in it
// makes the mapper ask the API server again (a CRD applied by an earlier addon stage).
const missRefresh = 2 * time.Second

// leanMapper is a RESTMapper of one workload cluster that discovers only the group versions it is
// asked about, one `/api/v1` or `/apis/<group>/<version>` request each, and keeps just kind,
// resource and scope of them.
//
// Why not controller-runtime's dynamic mapper: it loads the aggregated discovery document of the
// whole cluster and keeps a full DefaultRESTMapper of every group it has seen, about a quarter
// of a MiB per cluster; with hundreds of workload clusters that was most of the operator's heap.
// Addons use a handful of group versions (core, apps, rbac, a few CRDs), and this is all the
// operator needs of them: the REST path and whether a kind is namespaced.
type leanMapper struct {
	discovery discovery.DiscoveryInterface
	now       func() time.Time

	mu sync.Mutex
	// groupVersions holds the discovered group versions; a group version the server does not
	// serve is kept with no kinds, so that asking again is bounded by missRefresh.
	groupVersions map[schema.GroupVersion]*discoveredGroupVersion
	// preferred is the preferred version of each group asked for without a version.
	preferred map[string]string
}

type discoveredGroupVersion struct {
	fetched time.Time
	kinds   *kindTable // shared with every mapper that discovered the same, never changed
}

// kindTable is the kinds of one discovered group version.
type kindTable struct {
	byKind map[string]resourceInfo
}

// kindTables interns the discovered kind tables: the workload clusters of a fleet mostly serve
// the same group versions with the same kinds, and one table then serves all their mappers
// (BenchmarkCacheMemory). A table goes when no mapper holds it.
var kindTables = &internedKinds{tables: map[string]weak.Pointer[kindTable]{}}

type internedKinds struct {
	mu     sync.Mutex
	tables map[string]weak.Pointer[kindTable] // by group version and content
}

// intern returns the table of gv with the kinds byKind, the one already held when there is one.
func (t *internedKinds) intern(gv schema.GroupVersion, byKind map[string]resourceInfo) *kindTable {
	key := kindsKey(gv, byKind)
	t.mu.Lock()
	defer t.mu.Unlock()
	if kt := t.tables[key].Value(); kt != nil {
		return kt
	}
	kt := &kindTable{byKind: byKind}
	t.tables[key] = weak.Make(kt)
	runtime.AddCleanup(kt, t.forget, key)
	return kt
}

// kindsKey identifies the kinds byKind of gv by their content.
func kindsKey(gv schema.GroupVersion, byKind map[string]resourceInfo) string {
	lines := make([]string, 0, len(byKind))
	for kind, info := range byKind {
		lines = append(lines, fmt.Sprintf("%s %s %s %t", kind, info.resource, info.singular, info.namespaced))
	}
	slices.Sort(lines)
	return gv.String() + "\n" + strings.Join(lines, "\n")
}

// forget drops the entry of a table no mapper holds any more, unless it was replaced.
func (t *internedKinds) forget(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tables[key].Value() == nil {
		delete(t.tables, key)
	}
}

type resourceInfo struct {
	resource, singular string
	namespaced         bool
}

var _ meta.RESTMapper = (*leanMapper)(nil)

// discovered is what a leanMapper learnt: the group versions (whose entries are never changed,
// only replaced) and preferred versions. A mapper of a new connection to the same cluster starts
// from it.
type discovered struct {
	groupVersions map[schema.GroupVersion]*discoveredGroupVersion
	preferred     map[string]string
}

// snapshot returns a copy of what m discovered.
func (m *leanMapper) snapshot() discovered {
	m.mu.Lock()
	defer m.mu.Unlock()
	return discovered{groupVersions: maps.Clone(m.groupVersions), preferred: maps.Clone(m.preferred)}
}

// seed makes m start from what another mapper of the same cluster discovered.
func (m *leanMapper) seed(d discovered) {
	m.mu.Lock()
	defer m.mu.Unlock()
	maps.Copy(m.groupVersions, d.groupVersions)
	maps.Copy(m.preferred, d.preferred)
}

func newLeanMapper(dc discovery.DiscoveryInterface) *leanMapper {
	return &leanMapper{
		discovery:     dc,
		now:           time.Now,
		groupVersions: map[schema.GroupVersion]*discoveredGroupVersion{},
		preferred:     map[string]string{},
	}
}

// groupVersion returns the discovered kinds of gv, asking the API server when gv was never asked
// or, with refresh, when its answer is older than missRefresh.
func (m *leanMapper) groupVersion(gv schema.GroupVersion, refresh bool) (*discoveredGroupVersion, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.groupVersions[gv]; ok && (!refresh || m.now().Sub(d.fetched) < missRefresh) {
		return d, nil
	}
	list, err := m.discovery.ServerResourcesForGroupVersion(gv.String())
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("discovering %s: %w", gv, err)
	}
	byKind := map[string]resourceInfo{}
	if list != nil {
		for _, r := range list.APIResources {
			if strings.Contains(r.Name, "/") { // subresources
				continue
			}
			byKind[r.Kind] = resourceInfo{resource: r.Name, singular: r.SingularName, namespaced: r.Namespaced}
		}
	}
	d := &discoveredGroupVersion{fetched: m.now(), kinds: kindTables.intern(gv, byKind)}
	m.groupVersions[gv] = d
	return d, nil
}

// preferredVersion returns the version of group the API server prefers.
func (m *leanMapper) preferredVersion(group string) (string, error) {
	if group == "" {
		return "v1", nil
	}
	m.mu.Lock()
	v, ok := m.preferred[group]
	m.mu.Unlock()
	if ok {
		return v, nil
	}
	var g metav1.APIGroup
	if err := m.discovery.RESTClient().Get().AbsPath("/apis", group).Do(context.Background()).Into(&g); err != nil {
		if apierrors.IsNotFound(err) {
			return "", &meta.NoResourceMatchError{PartialResource: schema.GroupVersionResource{Group: group}}
		}
		return "", fmt.Errorf("discovering group %q: %w", group, err)
	}
	m.mu.Lock()
	m.preferred[group] = g.PreferredVersion.Version
	m.mu.Unlock()
	return g.PreferredVersion.Version, nil
}

// RESTMapping returns the mapping of gk in the first of versions that serves it (the preferred
// version when none is given).
func (m *leanMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	if len(versions) == 0 {
		v, err := m.preferredVersion(gk.Group)
		if err != nil {
			return nil, err
		}
		versions = []string{v}
	}
	for _, v := range versions {
		gv := schema.GroupVersion{Group: gk.Group, Version: v}
		d, err := m.groupVersion(gv, false)
		if err != nil {
			return nil, err
		}
		info, ok := d.kinds.byKind[gk.Kind]
		if !ok {
			if d, err = m.groupVersion(gv, true); err != nil {
				return nil, err
			}
			info, ok = d.kinds.byKind[gk.Kind]
		}
		if ok {
			scope := meta.RESTScopeRoot
			if info.namespaced {
				scope = meta.RESTScopeNamespace
			}
			return &meta.RESTMapping{
				Resource:         gv.WithResource(info.resource),
				GroupVersionKind: gv.WithKind(gk.Kind),
				Scope:            scope,
			}, nil
		}
	}
	return nil, &meta.NoKindMatchError{GroupKind: gk, SearchedVersions: versions}
}

// RESTMappings returns the one mapping RESTMapping finds.
func (m *leanMapper) RESTMappings(gk schema.GroupKind, versions ...string) ([]*meta.RESTMapping, error) {
	mapping, err := m.RESTMapping(gk, versions...)
	if err != nil {
		return nil, err
	}
	return []*meta.RESTMapping{mapping}, nil
}

// lookupResource finds the kind of a (possibly singular) resource name.
func (m *leanMapper) lookupResource(r schema.GroupVersionResource) (schema.GroupVersion, string, resourceInfo, error) {
	version := r.Version
	if version == "" {
		v, err := m.preferredVersion(r.Group)
		if err != nil {
			return schema.GroupVersion{}, "", resourceInfo{}, err
		}
		version = v
	}
	gv := schema.GroupVersion{Group: r.Group, Version: version}
	for _, refresh := range []bool{false, true} {
		d, err := m.groupVersion(gv, refresh)
		if err != nil {
			return schema.GroupVersion{}, "", resourceInfo{}, err
		}
		for kind, info := range d.kinds.byKind {
			if info.resource == r.Resource || info.singular == r.Resource {
				return gv, kind, info, nil
			}
		}
	}
	return schema.GroupVersion{}, "", resourceInfo{}, &meta.NoResourceMatchError{PartialResource: r}
}

// KindFor returns the kind of a resource.
func (m *leanMapper) KindFor(r schema.GroupVersionResource) (schema.GroupVersionKind, error) {
	gv, kind, _, err := m.lookupResource(r)
	if err != nil {
		return schema.GroupVersionKind{}, err
	}
	return gv.WithKind(kind), nil
}

// KindsFor returns the one kind KindFor finds.
func (m *leanMapper) KindsFor(r schema.GroupVersionResource) ([]schema.GroupVersionKind, error) {
	gvk, err := m.KindFor(r)
	if err != nil {
		return nil, err
	}
	return []schema.GroupVersionKind{gvk}, nil
}

// ResourceFor returns the fully specified resource of a (possibly singular or unversioned) one.
func (m *leanMapper) ResourceFor(r schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	gv, _, info, err := m.lookupResource(r)
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	return gv.WithResource(info.resource), nil
}

// ResourcesFor returns the one resource ResourceFor finds.
func (m *leanMapper) ResourcesFor(r schema.GroupVersionResource) ([]schema.GroupVersionResource, error) {
	gvr, err := m.ResourceFor(r)
	if err != nil {
		return nil, err
	}
	return []schema.GroupVersionResource{gvr}, nil
}

// ResourceSingularizer returns the singular name of a plural resource among the discovered ones.
func (m *leanMapper) ResourceSingularizer(resource string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.groupVersions {
		for _, info := range d.kinds.byKind {
			if info.resource == resource && info.singular != "" {
				return info.singular, nil
			}
		}
	}
	return resource, nil
}
