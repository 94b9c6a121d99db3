package chartdeps

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
	"sigs.k8s.io/yaml"
)

// index is what resolving a dependency reads of a Helm repository's index.yaml: each chart's
// versions with their archive URLs and digests.
//
// Why not Helm's reader (helm.sh/helm/v4/pkg/repo/v1 LoadIndexFile and IndexFile.Get), whose
// rules this follows: that package links Helm's getters and plugin system (a WebAssembly
// runtime, OpenPGP, kustomize through cli-runtime) into the manager, 2.5 MB of the binary and
// about 3 MiB of its resident memory in every replica, for one YAML file and a semver match.
type index struct {
	APIVersion string                  `json:"apiVersion"`
	Entries    map[string][]indexEntry `json:"entries"`
}

// indexEntry is one version of a chart in an index.
type indexEntry struct {
	Version string   `json:"version"`
	URLs    []string `json:"urls"`
	Digest  string   `json:"digest"`

	semver *semver.Version
}

var (
	// errNoChartName means the index has no chart of that name.
	errNoChartName = errors.New("no chart name found")
	// errNoChartVersion means no version of the chart matches.
	errNoChartVersion = errors.New("no chart version found")
)

// parseIndex reads an index.yaml (or its JSON form) as Helm does: versions that are not semantic
// versions are left out, and each chart's versions are sorted newest first.
func parseIndex(data []byte) (*index, error) {
	if len(data) == 0 {
		return nil, errors.New("empty index.yaml file")
	}
	idx := &index{}
	if err := yaml.Unmarshal(data, idx); err != nil {
		return nil, err
	}
	if idx.APIVersion == "" {
		return nil, errors.New("no API version specified")
	}
	for name, versions := range idx.Entries {
		kept := versions[:0]
		for _, v := range versions {
			sv, err := semver.NewVersion(v.Version)
			if err != nil {
				continue
			}
			v.semver = sv
			kept = append(kept, v)
		}
		slices.SortStableFunc(kept, func(a, b indexEntry) int { return b.semver.Compare(a.semver) })
		idx.Entries[name] = kept
	}
	return idx, nil
}

// get returns the newest version of chart name that matches the constraint version (any version
// when empty); a version written exactly as in the index matches first.
func (idx *index) get(name, version string) (indexEntry, error) {
	versions, ok := idx.Entries[name]
	if !ok {
		return indexEntry{}, errNoChartName
	}
	if version != "" {
		for _, v := range versions {
			if v.Version == version {
				return v, nil
			}
		}
	}
	if version == "" {
		version = "*"
	}
	constraint, err := semver.NewConstraint(version)
	if err != nil {
		return indexEntry{}, fmt.Errorf("version constraint %q: %w", version, err)
	}
	for _, v := range versions {
		if constraint.Check(v.semver) {
			return v, nil
		}
	}
	return indexEntry{}, errNoChartVersion
}

// resolveReferenceURL resolves a chart URL of an index against the repository's URL, as Helm does:
// relative to the repository as a directory, with the repository's query (which may carry a token).
func resolveReferenceURL(baseURL, refURL string) (string, error) {
	ref, err := url.Parse(refURL)
	if err != nil {
		return "", fmt.Errorf("parsing %q: %w", refURL, err)
	}
	if ref.IsAbs() {
		return refURL, nil
	}
	base, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("parsing the repository URL: %w", err)
	}
	base.RawPath = strings.TrimSuffix(base.RawPath, "/") + "/"
	base.Path = strings.TrimSuffix(base.Path, "/") + "/"
	resolved := base.ResolveReference(ref)
	resolved.RawQuery = base.RawQuery
	return resolved.String(), nil
}
