// Command artifacts makes what a release ships, from the kustomize overlays and the Helm chart
// under config/, with the same libraries the tests use (kustomize's krusty, Helm's chart package),
// so no kustomize, helm or clusterctl binary is needed:
//
//	go run ./hack/artifacts sync-chart
//	go run ./hack/artifacts build -version v0.1.0 -image <registry>/clusterstack-operator:v0.1.0 -out out
//
// sync-chart copies what controller-gen generates (CRDs, the manager's RBAC rules, the webhooks)
// and the metrics objects of config/rbac, config/prometheus and config/grafana into the chart, so
// the chart cannot drift from the code and the overlays; make manifests runs it. build writes
// clusterctl's metadata.yaml, the components file (runtime-extension-components.yaml) and the
// packaged chart into -out; make release-artifacts runs it.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/version"
	clusterctlv1 "sigs.k8s.io/cluster-api/cmd/clusterctl/api/v1alpha3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/yaml"
)

// Paths below the repository root, which is the working directory (make runs it there).
const (
	chartDir      = "config/chart/clusterstack-operator"
	metadataFile  = "config/clusterctl/metadata.yaml"
	componentsDir = "config/clusterctl"
	// componentsFile is the name clusterctl's provider configuration points at for this type.
	componentsFile = "runtime-extension-components.yaml"
	// providerLabel is clusterctl's cluster.x-k8s.io/provider value: type RuntimeExtensionProvider,
	// name clusterstack.
	providerLabel = "runtime-extension-clusterstack"
	// chartRepository and chartTag are the image lines of the chart's values.yaml, replaced when
	// packaging.
	chartRepository = "  repository: registry.example.com/clusterstack/clusterstack-operator\n"
	chartTag        = "  tag: \"\"\n"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: artifacts sync-chart | build -version V -image IMG -out DIR")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "sync-chart":
		err = syncChart()
	case "build":
		fs := flag.NewFlagSet("build", flag.ExitOnError)
		v := fs.String("version", "", "the release's version, e.g. v0.1.0 (git describe)")
		img := fs.String("image", "", "the manager image the components and the chart install")
		out := fs.String("out", "out", "directory to write the artifacts to")
		_ = fs.Parse(os.Args[2:])
		err = build(*v, *img, *out)
	default:
		err = fmt.Errorf("unknown command %q: want sync-chart or build", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "artifacts:", err)
		os.Exit(1)
	}
}

func kustomize(dir string) (resmap.ResMap, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	return m, nil
}

// chartCopies are the parts of the chart copied from the overlays: a field of the one object of a
// kind in a file, written as YAML to a file below the chart's files/.
var chartCopies = []struct {
	source, kind string
	field        []string
	file         string
}{
	{"config/rbac/role.yaml", "ClusterRole", []string{"rules"}, "manager-role-rules.yaml"},
	{"config/rbac/metrics_auth_role.yaml", "ClusterRole", []string{"rules"}, "metrics-auth-role-rules.yaml"},
	{"config/rbac/metrics_reader_role.yaml", "ClusterRole", []string{"rules"}, "metrics-reader-role-rules.yaml"},
	// The chart selects its own metrics Service and names the port of its mode (https or http).
	{"config/prometheus/monitor.yaml", "ServiceMonitor", []string{"spec", "endpoints"}, "servicemonitor-endpoints.yaml"},
	{"config/prometheus/alerts.yaml", "PrometheusRule", []string{"spec", "groups"}, "prometheus-rule-groups.yaml"},
}

// dashboard is config/grafana's dashboard, copied verbatim (JSON has no comments for a header).
const dashboard = "config/grafana/clusterstack-operator.json"

// syncChart writes the chart's generated parts: crds/ from config/crd (with its labels),
// files/*-webhooks.yaml from config/webhook/manifests.yaml, the chartCopies and the dashboard.
func syncChart() error {
	crds, err := kustomize("config/crd")
	if err != nil {
		return err
	}
	crdDir := filepath.Join(chartDir, "crds")
	if err := os.RemoveAll(crdDir); err != nil {
		return err
	}
	if err := os.MkdirAll(crdDir, 0o755); err != nil {
		return err
	}
	for _, r := range crds.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			return err
		}
		if err := write(filepath.Join(crdDir, r.GetName()+".yaml"), data); err != nil {
			return err
		}
	}

	for _, c := range chartCopies {
		objs, err := objects(c.source)
		if err != nil {
			return err
		}
		if len(objs) != 1 || objs[0]["kind"] != c.kind {
			return fmt.Errorf("reading %s: want the one %s", c.source, c.kind)
		}
		v, ok, err := unstructured.NestedFieldNoCopy(objs[0], c.field...)
		if err != nil || !ok {
			return fmt.Errorf("reading %s: the %s has no %s", c.source, c.kind, strings.Join(c.field, "."))
		}
		if err := writeYAML(filepath.Join(chartDir, "files", c.file), v); err != nil {
			return err
		}
	}

	webhooks, err := objects("config/webhook/manifests.yaml")
	if err != nil {
		return err
	}
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		var hooks any = []any{}
		for _, o := range webhooks {
			if o["kind"] == kind {
				hooks = o["webhooks"]
			}
		}
		name := strings.ToLower(strings.TrimSuffix(kind, "WebhookConfiguration")) + "-webhooks.yaml"
		if err := writeYAML(filepath.Join(chartDir, "files", name), hooks); err != nil {
			return err
		}
	}

	data, err := os.ReadFile(dashboard)
	if err != nil {
		return err
	}
	return write(filepath.Join(chartDir, "files", filepath.Base(dashboard)), data)
}

// objects reads the YAML documents of a file.
func objects(path string) ([]map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for doc := range strings.SplitSeq(string(data), "\n---") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if o != nil {
			out = append(out, o)
		}
	}
	return out, nil
}

const generatedHeader = "# Generated by `make manifests` (go run ./hack/artifacts sync-chart); do not edit.\n"

func writeYAML(path string, v any) error {
	data, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	return write(path, append([]byte(generatedHeader), data...))
}

func write(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func build(ver, image, out string) error {
	if ver == "" || image == "" {
		return errors.New("build needs -version and -image")
	}
	repo, tag, ok := splitImage(image)
	if !ok {
		return fmt.Errorf("image %q: want <repository>:<tag>", image)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}

	// metadata.yaml: clusterctl refuses to install a version whose release series it lacks.
	data, err := os.ReadFile(metadataFile)
	if err != nil {
		return err
	}
	var meta clusterctlv1.Metadata
	if err := yaml.UnmarshalStrict(data, &meta); err != nil {
		return fmt.Errorf("reading %s: %w", metadataFile, err)
	}
	if meta.APIVersion != clusterctlv1.GroupVersion.String() || meta.Kind != "Metadata" {
		return fmt.Errorf("reading %s: want %s Metadata", metadataFile, clusterctlv1.GroupVersion)
	}
	if v, err := version.ParseSemantic(ver); err == nil {
		if meta.GetReleaseSeriesForVersion(v) == nil {
			return fmt.Errorf("%s has no release series for %s: add %d.%d with its Cluster API contract", metadataFile, ver, v.Major(), v.Minor())
		}
	} else {
		fmt.Fprintf(os.Stderr, "artifacts: %s is not a release version (semver tag), clusterctl will not install it by version\n", ver)
	}
	if err := write(filepath.Join(out, "metadata.yaml"), data); err != nil {
		return err
	}

	components, err := renderComponents(image)
	if err != nil {
		return err
	}
	if err := write(filepath.Join(out, componentsFile), components); err != nil {
		return err
	}

	pkg, err := packageChart(ver, repo, tag, out)
	if err != nil {
		return err
	}
	for _, f := range []string{"metadata.yaml", componentsFile, filepath.Base(pkg)} {
		fmt.Println(filepath.Join(out, f))
	}
	return nil
}

// variable matches clusterctl's variables, ${NAME} or ${NAME:=default}.
var variable = regexp.MustCompile(`\$\{\s*([A-Za-z0-9_]+)\s*(:=[^}]*)?\}`)

// renderComponents renders config/clusterctl with the image and checks clusterctl's rules for a
// components file: one Namespace holding every namespaced object, the provider label on every
// object, and a default for every variable.
func renderComponents(image string) ([]byte, error) {
	m, err := kustomize(componentsDir)
	if err != nil {
		return nil, err
	}
	namespace := ""
	for _, r := range m.Resources() {
		if r.GetKind() == "Namespace" {
			if namespace != "" {
				return nil, fmt.Errorf("the components hold two namespaces, %s and %s: clusterctl installs into one", namespace, r.GetName())
			}
			namespace = r.GetName()
		}
	}
	images := 0
	for _, r := range m.Resources() {
		if ns := r.GetNamespace(); ns != "" && ns != namespace {
			return nil, fmt.Errorf("%s %s is in namespace %s, not in the components' namespace %q", r.GetKind(), r.GetName(), ns, namespace)
		}
		if got := r.GetLabels()["cluster.x-k8s.io/provider"]; got != providerLabel {
			return nil, fmt.Errorf("%s %s has cluster.x-k8s.io/provider %q, want %s", r.GetKind(), r.GetName(), got, providerLabel)
		}
		if r.GetKind() != "Deployment" {
			continue
		}
		manager, err := r.Pipe(kyaml.Lookup("spec", "template", "spec", "containers", "[name=manager]"))
		if err != nil {
			return nil, fmt.Errorf("finding the manager container of %s: %w", r.GetName(), err)
		}
		if manager == nil {
			continue
		}
		if err := manager.PipeE(kyaml.SetField("image", kyaml.NewScalarRNode(image))); err != nil {
			return nil, fmt.Errorf("setting the manager image: %w", err)
		}
		images++
	}
	if images != 1 {
		return nil, fmt.Errorf("found %d manager containers in the components, want 1", images)
	}
	data, err := m.AsYaml()
	if err != nil {
		return nil, err
	}
	for _, v := range variable.FindAllSubmatch(data, -1) {
		if len(v[2]) == 0 {
			return nil, fmt.Errorf("clusterctl variable %s has no default: clusterctl would refuse to install without it", v[1])
		}
	}
	header := fmt.Sprintf("# The ClusterStack operator for OpenStack, %s: the components clusterctl installs\n# (provider type RuntimeExtensionProvider, name clusterstack), or kubectl apply -f.\n", image)
	return append([]byte(header), data...), nil
}

// splitImage splits <repository>:<tag>; a registry port is no tag.
func splitImage(image string) (repo, tag string, ok bool) {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") || strings.Contains(image, "@") {
		return "", "", false
	}
	return image[:i], image[i+1:], image[:i] != "" && image[i+1:] != ""
}

// packageChart packages the chart with the release's version and image, as `helm package` does.
func packageChart(ver, repo, tag, out string) (string, error) {
	ch, err := loader.LoadDir(chartDir)
	if err != nil {
		return "", fmt.Errorf("loading the chart: %w", err)
	}
	ch.Metadata.Version = chartVersion(ver)
	ch.Metadata.AppVersion = ver
	if err := setImage(ch, repo, tag); err != nil {
		return "", err
	}
	if err := ch.Validate(); err != nil {
		return "", fmt.Errorf("validating the chart: %w", err)
	}
	return chartutil.Save(ch, out)
}

// chartVersion is the release's version as the SemVer 2 that Helm requires: v0.1.0 is 0.1.0,
// and an untagged build (a commit hash) becomes a pre-release of 0.0.0.
func chartVersion(ver string) string {
	v := strings.TrimPrefix(ver, "v")
	if _, err := semver.StrictNewVersion(v); err == nil {
		return v
	}
	return "0.0.0-" + regexp.MustCompile(`[^0-9A-Za-z-]+`).ReplaceAllString(ver, "-")
}

// setImage writes the image into the chart's values.yaml, keeping its comments.
func setImage(ch *chart.Chart, repo, tag string) error {
	for _, f := range ch.Raw {
		if f.Name != chartutil.ValuesfileName {
			continue
		}
		for _, line := range []struct{ old, new string }{
			{chartRepository, fmt.Sprintf("  repository: %s\n", repo)},
			{chartTag, fmt.Sprintf("  tag: %q\n", tag)},
		} {
			if bytes.Count(f.Data, []byte(line.old)) != 1 {
				return fmt.Errorf("the chart's values.yaml does not hold the image line %q once", line.old)
			}
			f.Data = bytes.Replace(f.Data, []byte(line.old), []byte(line.new), 1)
		}
		vals, err := common.ReadValues(f.Data)
		if err != nil {
			return fmt.Errorf("reading the chart's values.yaml: %w", err)
		}
		ch.Values = vals
		return nil
	}
	return errors.New("the chart has no values.yaml")
}
