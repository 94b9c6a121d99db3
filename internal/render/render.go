// Package render turns Helm charts and the SCS values templates into Kubernetes objects, with the
// Helm v4 SDK and without any network access: a release's charts carry their dependencies in
// charts/, and rendering must behave the same on an air-gapped management cluster. It renders the
// way `helm template` does (same engine, values coalescing, dependency conditions and import-values,
// schema validation, install order) but returns objects instead of text and never installs anything.
//
// Charts are outside input, and a Go template cannot be interrupted: `range until 20000000` runs
// and allocates until it is done, whatever the deadline. So every template (charts and values
// templates) runs in a worker process of the operator's own binary (package isolated: a pool of at
// most Limits.Concurrency workers, reused for many renderings), with a time, an output-size and a
// memory budget per rendering (Limits, set from the manager's --render-* flags), so that the
// manager and its renders together stay under the pod's memory limit whatever a chart does. When
// no worker can be started, rendering fails (ErrRenderUnavailable) instead of falling back to
// rendering in-process, which would give up every budget.
//
// The parent loads the chart into a file set (path -> bytes) and sends it with the options; the
// worker loads the chart from that set, renders it, parses the YAML and returns the objects as
// JSON. YAML parsing happens in the worker too: a rendered document can be as hostile as a
// template. The parent keeps recent answers (compact JSON, decoded anew for every caller) by the
// digest of the request, which holds everything a rendering depends on: the same files, options
// and values render once (resultCache), and identical renderings at the same time share one.
// A chart whose templates call random or time functions (randAlphaNum, now) therefore renders
// the same objects while its result is cached, rather than new ones on every reconcile.
package render

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	helmrelease "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/render/isolated"
)

// Options describe one rendering of a chart.
type Options struct {
	// ReleaseName is the Helm release name (.Release.Name).
	ReleaseName string
	// Namespace is .Release.Namespace. Objects keep the namespace their templates give them:
	// which kinds are namespaced is a fact of the cluster they go to, so defaulting the namespace
	// is for the caller that knows it (apply.SetDefaultNamespace).
	Namespace string
	// KubeVersion, e.g. "v1.32.5", is .Capabilities.KubeVersion and is checked against the chart's
	// kubeVersion constraint. Empty means Helm's default version.
	KubeVersion string
	// Values are merged over the chart's values.yaml.
	Values map[string]any
	// IncludeCRDs also returns the objects of the chart's (and sub-charts') crds/ directories, first.
	IncludeCRDs bool
	// APIVersions are extra .Capabilities.APIVersions ("group/version" or "group/version/Kind").
	APIVersions []string
}

// errRenderedTooLarge ends a rendering child whose templates rendered more text than its output
// budget.
var errRenderedTooLarge = errors.New("rendered text exceeds the output budget")

// ErrIncompatibleKubeVersion is returned (wrapped) when the chart's kubeVersion constraint does not
// accept Options.KubeVersion.
var ErrIncompatibleKubeVersion = errors.New("chart does not support this Kubernetes version")

// Chart renders the chart at path (a packaged .tgz or a chart directory) and returns its objects in
// a stable order: the crds/ objects (with IncludeCRDs), then CustomResourceDefinitions and
// Namespaces from the templates, then everything else in Helm's install order.
//
// Hooks (templates with a helm.sh/hook annotation) are returned as ordinary objects after the
// other templates: the operator has no install/upgrade events to run them on, and SCS charts use
// hooks only for objects that must simply exist. NOTES.txt, partials and empty documents are
// skipped. Template errors name the chart and the template file. A chart that exceeds a budget
// gives ErrRenderTimeout, ErrRenderTooLarge or ErrRenderMemory (errors.Is).
func Chart(ctx context.Context, chartPath string, opts Options) ([]*unstructured.Unstructured, error) {
	ch, err := loadChart(chartPath)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", chartPath, err)
	}
	return renderLoaded(ctx, ch, opts)
}

// File is one file of a chart: its path inside the chart (slash-separated, e.g.
// "templates/deployment.yaml", "charts/sub/Chart.yaml") and its content.
type File struct {
	Name string
	Data []byte
}

// ChartFiles renders the chart made of files, as Chart does; for callers that hold a chart's
// verified files in memory rather than on disk.
func ChartFiles(ctx context.Context, files []File, opts Options) ([]*unstructured.Unstructured, error) {
	ch, err := loader.LoadFiles(bufferedFiles(files))
	if err != nil {
		return nil, fmt.Errorf("loading chart: %w", err)
	}
	return renderLoaded(ctx, ch, opts)
}

// renderLoaded renders a chart the parent has loaded (to know its name and to fail early on a
// chart Helm cannot load) in a child process.
func renderLoaded(ctx context.Context, ch *chart.Chart, opts Options) ([]*unstructured.Unstructured, error) {
	req := request{Chart: &chartRequest{
		ReleaseName: opts.ReleaseName,
		Namespace:   opts.Namespace,
		KubeVersion: opts.KubeVersion,
		Values:      opts.Values,
		IncludeCRDs: opts.IncludeCRDs,
		APIVersions: opts.APIVersions,
	}}
	for _, f := range ch.Raw {
		req.Chart.Files = append(req.Chart.Files, File{Name: f.Name, Data: f.Data})
	}
	resp, err := runIsolated(ctx, "chart "+ch.Name(), req)
	if err != nil {
		return nil, err
	}
	objs := make([]*unstructured.Unstructured, 0, len(resp.Objects))
	for _, raw := range resp.Objects {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("rendering chart %s: reading the renderer's output: %w", ch.Name(), err)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

func bufferedFiles(files []File) []*archive.BufferedFile {
	out := make([]*archive.BufferedFile, len(files))
	for i, f := range files {
		out[i] = &archive.BufferedFile{Name: f.Name, Data: f.Data}
	}
	return out
}

// renderInProcess is what the child runs for a chart request: load, render, parse.
func renderInProcess(ctx context.Context, files []File, opts Options) ([]*unstructured.Unstructured, error) {
	ch, err := loader.LoadFiles(bufferedFiles(files))
	if err != nil {
		return nil, fmt.Errorf("loading chart: %w", err)
	}
	objs, err := renderChart(ctx, ch, opts)
	if err != nil {
		return nil, fmt.Errorf("rendering chart %s: %w", ch.Name(), err)
	}
	return objs, nil
}

// renderChart renders a loaded chart the way `helm template` does, in the rendering process.
func renderChart(ctx context.Context, ch *chart.Chart, opts Options) ([]*unstructured.Unstructured, error) {
	caps, err := capabilities(ch, opts)
	if err != nil {
		return nil, err
	}
	files, err := renderTemplates(ctx, ch, opts, caps)
	if err != nil {
		return nil, err
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("splitting rendered manifests: %w", err)
	}
	return decodeRendered(ch, opts.IncludeCRDs, manifests, hooks)
}

// capabilities returns the .Capabilities of the rendering, and ErrIncompatibleKubeVersion when
// the chart's kubeVersion constraint rules the Kubernetes version out.
func capabilities(ch *chart.Chart, opts Options) (*common.Capabilities, error) {
	caps := common.DefaultCapabilities.Copy()
	if opts.KubeVersion != "" {
		kv, err := common.ParseKubeVersion(opts.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("parsing Kubernetes version %q: %w", opts.KubeVersion, err)
		}
		caps.KubeVersion = *kv
	}
	caps.APIVersions = append(caps.APIVersions, opts.APIVersions...)
	if c := ch.Metadata.KubeVersion; c != "" && !chartutil.IsCompatibleRange(c, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("%w: chart requires kubeVersion %s, rendering for %s", ErrIncompatibleKubeVersion, c, caps.KubeVersion.Version)
	}
	return caps, nil
}

// renderTemplates runs the chart's templates and returns the rendered files (name -> text)
// without NOTES.txt, or errRenderedTooLarge when they exceed the output budget.
func renderTemplates(ctx context.Context, ch *chart.Chart, opts Options, caps *common.Capabilities) (map[string]string, error) {
	renderVals, err := renderValues(ch, opts, caps)
	if err != nil {
		return nil, err
	}
	// The zero Engine has no REST config: `lookup` returns empty results and nothing reaches a
	// cluster or DNS, as in `helm template`.
	var e engine.Engine
	files, err := e.RenderWithContext(ctx, ch, renderVals)
	if err != nil {
		return nil, err
	}
	total := 0
	for name, content := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
			continue
		}
		total += len(content)
	}
	// The objects are larger as JSON than as YAML: text over the budget will not fit, and
	// parsing it would only cost memory.
	if limit := isolated.OutputBudget(); limit > 0 && int64(total) > limit {
		return nil, errRenderedTooLarge
	}
	return files, nil
}

// renderValues coalesces opts.Values with the chart's and its dependencies' values, as Helm
// does for an install, and validates them against the charts' schemas.
func renderValues(ch *chart.Chart, opts Options, caps *common.Capabilities) (common.Values, error) {
	// ProcessDependencies and the coalescing below write into the values they are given; the
	// caller's map must stay untouched (callers reuse it for several charts).
	vals := deepCopyMap(opts.Values)
	if err := chartutil.ProcessDependencies(ch, vals); err != nil {
		return nil, fmt.Errorf("processing dependencies: %w", err)
	}
	renderVals, err := commonutil.ToRenderValuesWithSchemaValidation(ch, vals, common.ReleaseOptions{
		Name:      opts.ReleaseName,
		Namespace: opts.Namespace,
		Revision:  1,
		IsInstall: true,
	}, caps, false)
	if err != nil {
		return nil, fmt.Errorf("preparing values: %w", err)
	}
	return renderVals, nil
}

// decodeRendered parses the chart's crds/ files (with includeCRDs), the rendered manifests and
// the hooks into objects: the CRDs first, then the rest with the kinds others depend on first.
func decodeRendered(ch *chart.Chart, includeCRDs bool, manifests []releaseutil.Manifest, hooks []*helmrelease.Hook) ([]*unstructured.Unstructured, error) {
	var crds, rest []*unstructured.Unstructured
	if includeCRDs {
		for _, crd := range ch.CRDObjects() {
			objs, err := decodeDocuments(crd.Filename, crd.File.Data)
			if err != nil {
				return nil, err
			}
			crds = append(crds, objs...)
		}
	}
	for _, m := range manifests {
		objs, err := decodeDocuments(m.Name, []byte(m.Content))
		if err != nil {
			return nil, err
		}
		rest = append(rest, objs...)
	}
	for _, h := range hooks {
		objs, err := decodeDocuments(h.Path, []byte(h.Manifest))
		if err != nil {
			return nil, err
		}
		rest = append(rest, objs...)
	}
	// Kinds that others depend on go first even when they come from templates or hooks.
	sort.SliceStable(rest, func(i, j int) bool { return firstRank(rest[i]) < firstRank(rest[j]) })
	return append(crds, rest...), nil
}

func firstRank(u *unstructured.Unstructured) int {
	gvk := u.GroupVersionKind()
	switch {
	case gvk.Group == "apiextensions.k8s.io" && gvk.Kind == "CustomResourceDefinition":
		return 0
	case gvk.Group == "" && gvk.Kind == "Namespace":
		return 1
	default:
		return 2
	}
}

// decodeDocuments parses a (multi-document) YAML file into objects, skipping empty documents.
func decodeDocuments(file string, data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("parsing %s (document %d): %w", file, i+1, err)
		}
		j = bytes.TrimSpace(j)
		if len(j) == 0 || string(j) == "null" || string(j) == "{}" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("parsing %s (document %d): %w", file, i+1, err)
		}
		if u.GetName() == "" && u.GetGenerateName() == "" {
			return nil, fmt.Errorf("parsing %s (document %d): %s has no metadata.name", file, i+1, u.GroupVersionKind().Kind)
		}
		if u.IsList() {
			return nil, fmt.Errorf("parsing %s (document %d): lists are not supported", file, i+1)
		}
		objs = append(objs, u)
	}
}

// deepCopyMap copies the maps and slices of a values tree; leaves are shared (they are immutable
// scalars in values).
func deepCopyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopyValue(v)
	}
	return out
}

func deepCopyValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return deepCopyMap(t)
	case common.Values:
		return deepCopyMap(t)
	case []any:
		out := make([]any, len(t))
		for i := range t {
			out[i] = deepCopyValue(t[i])
		}
		return out
	default:
		return v
	}
}
