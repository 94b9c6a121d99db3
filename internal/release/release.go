// Package release defines a verified cluster-stack release on disk: the
// parsed metadata.yaml, node-images.yaml and addon plan (clusteraddon.yaml),
// and the paths of the files later stages use (the cluster-class chart, the
// addon archive, cluster-addon-values.yaml). Load is the only way to get a
// Release, and it rejects a release whole when any file is missing, malformed,
// unsafe or inconsistent with the release name, so a loaded release is usable
// in every part.
package release

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon/plan"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/archive"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// File names fixed by the release format.
const (
	HashesFile             = "hashes.json"
	ClusterAddonConfigFile = "clusteraddon.yaml"
	ClusterAddonValuesFile = "cluster-addon-values.yaml"
	NodeImagesFile         = "node-images.yaml"
)

// Errors that classify why a release was rejected. They are wrapped in an
// *InvalidError that names the file.
var (
	// ErrInvalid matches every *InvalidError.
	ErrInvalid = errors.New("invalid release")
	// ErrMissingFile: a required file is absent.
	ErrMissingFile = errors.New("missing file")
	// ErrInconsistent: the release name and metadata.yaml disagree.
	ErrInconsistent = errors.New("release name and metadata disagree")
	// ErrMalformedFile: a file is not what its name promises.
	ErrMalformedFile = errors.New("malformed file")
)

// InvalidError says which file of which release failed verification and why.
type InvalidError struct {
	Release string
	File    string
	Err     error
}

func (e *InvalidError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("release %q is invalid: %v", e.Release, e.Err)
	}
	return fmt.Sprintf("release %q is invalid: %s: %v", e.Release, e.File, e.Err)
}

func (e *InvalidError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalid) true for every *InvalidError.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// AddonConvention tells how the addons of a release are packaged.
type AddonConvention string

const (
	// AddonConventionConfig is the current convention: the addon archive is a
	// directory of Helm charts and clusteraddon.yaml says what to apply when.
	AddonConventionConfig AddonConvention = "clusteraddon.yaml"
	// AddonConventionValues is the older convention: the addon archive is one
	// umbrella Helm chart installed with cluster-addon-values.yaml.
	AddonConventionValues AddonConvention = "cluster-addon-values.yaml"
)

// Release is a verified release directory. Paths are absolute.
type Release struct {
	// Name is the parsed release name.
	Name name.Release
	// Dir is the directory that holds the release files.
	Dir string
	// Digest is the content digest of the directory (see DirDigest); set by
	// the cache, empty for a release loaded elsewhere.
	Digest string
	// Metadata is the parsed metadata.yaml.
	Metadata Metadata
	// ClusterClassChart is the packaged cluster-class Helm chart.
	ClusterClassChart string
	// ClusterAddonArchive is the addon archive (a directory of charts or one
	// umbrella chart, see AddonConvention).
	ClusterAddonArchive string
	// AddonConvention tells which of the two addon files is set.
	AddonConvention AddonConvention
	// AddonPlan is the parsed and checked clusteraddon.yaml: every stage names a chart of the
	// addon archive. Nil for the values convention.
	AddonPlan *plan.Config
	// ClusterAddonValues is cluster-addon-values.yaml; empty for the config convention.
	ClusterAddonValues string
	// NodeImages are the images of node-images.yaml, parsed and validated; none when the
	// release has no such file or it lists none.
	NodeImages []infrav1.NodeImage
}

// Options tune verification.
type Options struct {
	// Limits bound the archives of the release; zero means archive.DefaultLimits.
	Limits archive.Limits
}

// Load verifies the release directory dir for release n and returns it. It never changes dir.
func Load(dir string, n name.Release, opts Options) (*Release, error) {
	limits := opts.Limits
	if limits == (archive.Limits{}) {
		limits = archive.DefaultLimits
	}
	if err := n.Validate(); err != nil {
		return nil, &InvalidError{Release: n.String(), Err: err}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving release directory: %w", err)
	}
	files, err := regularFiles(dir)
	if err != nil {
		return nil, &InvalidError{Release: n.String(), Err: err}
	}
	l := &loader{dir: dir, files: files, limits: limits}
	r := &Release{Name: n, Dir: dir}
	// Each step reads and checks one part of the release; the first problem names its file.
	for _, step := range []func(*Release) (string, error){l.metadata, l.versionedFiles, l.addonConvention, l.nodeImages, l.archives} {
		if file, err := step(r); err != nil {
			return nil, &InvalidError{Release: n.String(), File: file, Err: err}
		}
	}
	return r, nil
}

// loader holds what the steps of Load share: the release directory and its regular files.
type loader struct {
	dir    string
	files  []string // sorted
	limits archive.Limits
}

func (l *loader) has(f string) bool { _, ok := slices.BinarySearch(l.files, f); return ok }

// metadata reads metadata.yaml and checks that it agrees with the release name.
func (l *loader) metadata(r *Release) (string, error) {
	if !l.has(MetadataFile) {
		return MetadataFile, ErrMissingFile
	}
	data, err := os.ReadFile(filepath.Join(l.dir, MetadataFile))
	if err != nil {
		return MetadataFile, err
	}
	md, err := ParseMetadata(data)
	if err != nil {
		return MetadataFile, err
	}
	stackVersion, _ := md.StackVersion()
	k8s, _ := md.KubernetesMinor()
	if stackVersion.Compare(r.Name.Version) != 0 {
		return MetadataFile, fmt.Errorf("versions.clusterStack is %s but the release name says %s: %w", stackVersion, r.Name.Version, ErrInconsistent)
	}
	if k8s != r.Name.Kubernetes {
		return MetadataFile, fmt.Errorf("versions.kubernetes %s is not Kubernetes %s as the release name says: %w", md.Versions.Kubernetes, r.Name.Kubernetes, ErrInconsistent)
	}
	r.Metadata = md
	return "", nil
}

// versionedFiles finds the cluster-class chart and the addon archive, named by the versions the
// metadata gives.
func (l *loader) versionedFiles(r *Release) (string, error) {
	stackVersion, _ := r.Metadata.StackVersion()
	addonVersion, _ := r.Metadata.AddonVersion()
	var err error
	if r.ClusterClassChart, err = versionedFile(l.dir, l.has, r.Name.Prefix()+"-cluster-class-", stackVersion); err != nil {
		return filepath.Base(r.ClusterClassChart), err
	}
	if r.ClusterAddonArchive, err = versionedFile(l.dir, l.has, r.Name.Prefix()+"-cluster-addon-", addonVersion); err != nil {
		return filepath.Base(r.ClusterAddonArchive), err
	}
	return "", nil
}

// addonConvention decides how the release describes its addons.
func (l *loader) addonConvention(r *Release) (string, error) {
	switch {
	case l.has(ClusterAddonConfigFile):
		// A release built with the new convention may still carry an old
		// values file; the config file decides.
		r.AddonConvention = AddonConventionConfig
	case l.has(ClusterAddonValuesFile):
		r.AddonConvention = AddonConventionValues
		r.ClusterAddonValues = filepath.Join(l.dir, ClusterAddonValuesFile)
	default:
		return ClusterAddonConfigFile, fmt.Errorf("neither %s nor %s is present: %w", ClusterAddonConfigFile, ClusterAddonValuesFile, ErrMissingFile)
	}
	return "", nil
}

// nodeImages parses node-images.yaml, when the release has one.
func (l *loader) nodeImages(r *Release) (string, error) {
	if !l.has(NodeImagesFile) {
		return "", nil
	}
	data, err := readBounded(filepath.Join(l.dir, NodeImagesFile), maxNodeImagesBytes)
	if err != nil {
		return NodeImagesFile, err
	}
	if r.NodeImages, err = ParseNodeImages(data); err != nil {
		return NodeImagesFile, fmt.Errorf("%w: %w", err, ErrMalformedFile)
	}
	return "", nil
}

// archives checks both archives within the limits and parses the addon plan against the charts
// the addon archive holds.
func (l *loader) archives(r *Release) (string, error) {
	classEntries, err := archive.CheckFile(r.ClusterClassChart, l.limits)
	if err != nil {
		return filepath.Base(r.ClusterClassChart), err
	}
	if len(chartDirs(classEntries)) != 1 {
		return filepath.Base(r.ClusterClassChart), fmt.Errorf("not a packaged Helm chart (want exactly one <chart>/Chart.yaml): %w", ErrMalformedFile)
	}
	addonEntries, err := archive.CheckFile(r.ClusterAddonArchive, l.limits)
	if err != nil {
		return filepath.Base(r.ClusterAddonArchive), err
	}
	charts := chartDirs(addonEntries)
	if len(charts) == 0 {
		return filepath.Base(r.ClusterAddonArchive), fmt.Errorf("holds no Helm chart: %w", ErrMalformedFile)
	}
	if r.AddonConvention == AddonConventionConfig {
		if r.AddonPlan, err = loadAddonPlan(filepath.Join(l.dir, ClusterAddonConfigFile), charts); err != nil {
			return ClusterAddonConfigFile, fmt.Errorf("%w: %w", err, ErrMalformedFile)
		}
	}
	return "", nil
}

// regularFiles lists the top-level names of dir, refusing anything that is
// not a regular file: a release is a flat set of files.
func regularFiles(dir string) ([]string, error) {
	list, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading release directory: %w", err)
	}
	var files []string
	for _, e := range list {
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("%q is not a regular file: %w", e.Name(), ErrMalformedFile)
		}
		files = append(files, e.Name())
	}
	slices.Sort(files)
	return files, nil
}

// versionedFile finds <stem><version>.tgz. The version is normally written
// in its dotted form (it is the Helm chart version), but the dashed form is
// accepted as well since both are unambiguous.
func versionedFile(dir string, has func(string) bool, stem string, v name.Version) (string, error) {
	dotted := stem + v.String() + ".tgz"
	for _, f := range []string{dotted, stem + v.Dashed() + ".tgz"} {
		if has(f) {
			return filepath.Join(dir, f), nil
		}
	}
	return filepath.Join(dir, dotted), ErrMissingFile
}

// chartDirs returns the top-level directories that hold a Chart.yaml.
func chartDirs(entries []archive.Entry) []string {
	var dirs []string
	for _, e := range entries {
		if e.Type != tar.TypeReg || path.Base(e.Name) != "Chart.yaml" {
			continue
		}
		if d := path.Dir(e.Name); d != "." && !strings.Contains(d, "/") {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	return slices.Compact(dirs)
}

// maxAddonPlanBytes bounds clusteraddon.yaml as plan.Parse does.
const maxAddonPlanBytes = 1 << 20

// loadAddonPlan parses clusteraddon.yaml (plan.Parse checks hooks, actions and conditions) and
// checks that every stage names a chart of the addon archive, so a typo fails when the release
// is loaded rather than halfway through a cluster upgrade.
func loadAddonPlan(file string, charts []string) (*plan.Config, error) {
	data, err := readBounded(file, maxAddonPlanBytes)
	if err != nil {
		return nil, err
	}
	p, err := plan.Parse(data)
	if err != nil {
		return nil, err
	}
	hooks := slices.Sorted(maps.Keys(p.AddonStages))
	for _, hook := range hooks {
		for i, s := range p.AddonStages[hook] {
			if _, ok := slices.BinarySearch(charts, s.Name); !ok {
				return nil, &plan.ConfigError{Field: fmt.Sprintf("addonStages.%s[%d].name", hook, i), Err: fmt.Errorf("%q is not a chart of the addon archive (have %v)", s.Name, charts)}
			}
		}
	}
	return p, nil
}

// readBounded reads a release file of at most limit bytes: release files are outside input.
func readBounded(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes: %w", limit, ErrMalformedFile)
	}
	return data, nil
}

// DirDigest returns the content digest of a flat release directory:
// sha256 over the sorted list of "<name> <sha256 of file>\n" lines. Two
// directories with the same files have the same digest wherever they came from.
func DirDigest(dir string) (string, error) {
	files, err := regularFiles(dir)
	if err != nil {
		return "", err
	}
	outer := sha256.New()
	for _, f := range files {
		h := sha256.New()
		fh, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", fmt.Errorf("hashing %q: %w", f, err)
		}
		fmt.Fprintf(outer, "%s %s\n", f, hex.EncodeToString(h.Sum(nil)))
	}
	return "sha256:" + hex.EncodeToString(outer.Sum(nil)), nil
}
