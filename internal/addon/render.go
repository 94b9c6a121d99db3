// Package addon renders the addons of a cluster-stack release for one workload cluster: it
// extracts the addon archive once per content, renders a chart of the clusteraddon.yaml
// convention with its overwrite.yaml, or the umbrella chart of the cluster-addon-values.yaml
// convention, and names a Cluster's ClusterAddon. What to render when is the plan's business
// (package plan); whether a stage may proceed, the conditions' (package condition).
package addon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon/plan"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/archive"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
)

// DefaultNamespace is .Release.Namespace of the addon charts and where namespaced addon objects
// without a namespace go (apply.SetDefaultNamespace), as with the reference operator.
const DefaultNamespace = "kube-system"

// HelmReleaseName is the Helm release name addon charts are rendered with; the reference renders
// with the same name, so objects named after `.Release.Name` keep their names.
const HelmReleaseName = "cluster-addon"

// OverwriteFile is the per-chart values template of the clusteraddon.yaml convention.
const OverwriteFile = "overwrite.yaml"

// ErrRender matches errors of rendering a chart or its values: the release is at fault, not the
// cluster, so retrying without a new release does not help.
var ErrRender = errors.New("rendering addons")

// ErrValuesNotReady matches a values template (overwrite.yaml, cluster-addon-values.yaml) that
// parses but fails on the data it is given, e.g. `.Cluster.spec.controlPlaneEndpoint.host` while
// the Cluster has no endpoint yet. The Cluster is not far enough, the release is not at fault:
// the same template renders once the Cluster progresses.
var ErrValuesNotReady = errors.New("values template cannot be evaluated on the Cluster yet")

// ErrNothingRendered (an ErrRender) matches an addon plan that names charts which render no
// object at all: installing nothing and calling it done would hide a broken release.
var ErrNothingRendered = fmt.Errorf("%w: the addon charts render no objects", ErrRender)

// DependencyResolver adds a chart's missing Chart.yaml dependencies (*chartdeps.Resolver).
type DependencyResolver interface {
	// Resolve returns the path of the chart at chartPath with its dependencies present.
	Resolve(ctx context.Context, chartPath string) (string, error)
}

// Input is what rendering needs besides the chart.
type Input struct {
	// KubeVersion is the Kubernetes version of the release (metadata versions.kubernetes).
	KubeVersion string
	// Data is the data of the values templates: Cluster, ControlPlane, InfraCluster.
	Data map[string]any
}

// Renderer renders the addons of releases. It extracts each addon archive once into its own
// directory under Dir and reuses it; it is safe for concurrent use.
type Renderer struct {
	// Dir holds the extracted addon archives, one directory per archive content.
	Dir string
	// Dependencies, when set, resolves the Chart.yaml dependencies a chart lacks in charts/
	// before it is rendered (the published scs2 stacks do not vendor them). Without it such
	// dependencies are missing from the rendered objects.
	Dependencies DependencyResolver

	mu   sync.Mutex
	dirs map[string]string // archive path -> extracted directory
}

// Extract returns the directory the addon archive of rel is extracted to, extracting it on first
// use. The directory is named by the archive's content hash, so a re-published release with the
// same name never reuses stale charts.
func (r *Renderer) Extract(rel *release.Release) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.dirs[rel.ClusterAddonArchive]; ok {
		if _, err := os.Stat(d); err == nil {
			return d, nil
		}
	}
	sum, err := fileHash(rel.ClusterAddonArchive)
	if err != nil {
		return "", fmt.Errorf("hashing addon archive: %w", err)
	}
	dir := filepath.Join(r.Dir, rel.Name.String()+"-"+sum[:16])
	if err := r.extractTo(rel.ClusterAddonArchive, dir); err != nil {
		return "", err
	}
	if r.dirs == nil {
		r.dirs = map[string]string{}
	}
	r.dirs[rel.ClusterAddonArchive] = dir
	return dir, nil
}

// extractTo extracts file to dir below r.Dir, unless dir exists already.
func (r *Renderer) extractTo(file, dir string) error {
	_, err := os.Stat(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return fmt.Errorf("creating addon cache directory: %w", err)
	}
	tmp, err := os.MkdirTemp(r.Dir, ".extract-")
	if err != nil {
		return fmt.Errorf("creating addon cache directory: %w", err)
	}
	if _, err := archive.ExtractFile(file, tmp, archive.DefaultLimits); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("extracting addon archive %s: %w", filepath.Base(file), err)
	}
	// Rename makes the directory appear complete or not at all, also for another process
	// sharing the cache.
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		if _, statErr := os.Stat(dir); statErr != nil {
			return fmt.Errorf("moving extracted addon archive into place: %w", err)
		}
	}
	return nil
}

func fileHash(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// RenderChart renders one chart of an extracted addon archive (clusteraddon.yaml convention) with
// its overwrite.yaml, if any, rendered over in.Data as values.
func (r *Renderer) RenderChart(ctx context.Context, addonDir, chart string, in Input) ([]*unstructured.Unstructured, error) {
	if err := plan.CheckChartName(chart); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRender, err)
	}
	chartDir := filepath.Join(addonDir, chart)
	values := map[string]any{}
	data, err := readInside(addonDir, chart+"/"+OverwriteFile)
	switch {
	case err == nil:
		if values, err = render.ValuesTemplate(data, in.Data); err != nil {
			return nil, valuesError(fmt.Sprintf("chart %s: %s", chart, OverwriteFile), err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("reading %s of chart %s: %w", OverwriteFile, chart, err)
	}
	return r.render(ctx, chartDir, values, in)
}

// readInside reads name below dir through an os.Root, refusing a symlink: the extracted archive
// holds none (archive.Extract refuses links), so one would have been put there by someone else.
func readInside(dir, name string) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	st, err := root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("reading %s: not a regular file: %w", name, archive.ErrLink)
	}
	return root.ReadFile(name)
}

// RenderUmbrella renders the umbrella chart of the cluster-addon-values.yaml convention with that
// file rendered over in.Data as values.
func (r *Renderer) RenderUmbrella(ctx context.Context, rel *release.Release, in Input) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(rel.ClusterAddonValues)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Base(rel.ClusterAddonValues), err)
	}
	values, err := render.ValuesTemplate(data, in.Data)
	if err != nil {
		return nil, valuesError(filepath.Base(rel.ClusterAddonValues), err)
	}
	return r.render(ctx, rel.ClusterAddonArchive, values, in)
}

// valuesError classifies a failed values template: one that parsed but failed while executing
// depends on the Cluster's state and waits (ErrValuesNotReady); anything else is the release's
// fault (ErrRender).
func valuesError(where string, err error) error {
	// The template runs in a rendering process (package render), so its text/template.ExecError
	// arrives as render.ErrValuesExecution.
	if errors.Is(err, render.ErrValuesExecution) {
		return fmt.Errorf("%w: %s: %w", ErrValuesNotReady, where, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrRender, where, err)
}

func (r *Renderer) render(ctx context.Context, chartPath string, values map[string]any, in Input) ([]*unstructured.Unstructured, error) {
	if r.Dependencies != nil {
		resolved, err := r.Dependencies.Resolve(ctx, chartPath)
		if err != nil {
			return nil, err
		}
		chartPath = resolved
	}
	objs, err := render.Chart(ctx, chartPath, render.Options{
		ReleaseName: HelmReleaseName,
		Namespace:   DefaultNamespace,
		KubeVersion: in.KubeVersion,
		Values:      values,
		IncludeCRDs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRender, err)
	}
	return objs, nil
}
