package source

import (
	"slices"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// names prints releases as List callers see them.
func names(rs []name.Release) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// inReleaseOrder sorts release names as List does (name.Release.Compare: v9 before v10).
func inReleaseOrder(ss []string) []string {
	rs := make([]name.Release, len(ss))
	for i, s := range ss {
		rs[i] = name.MustParse(s)
	}
	slices.SortFunc(rs, name.Release.Compare)
	return names(rs)
}

// unsafeName is a hand-built name that would leave the destination as a path or tag.
var unsafeName = name.Release{Provider: "..", Stack: "..", Kubernetes: name.KubernetesMinor{Major: 1, Minor: 32}, Version: name.Stable(1)}
