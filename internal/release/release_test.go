package release_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon/plan"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/archive"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

const (
	classChart = "openstack-scs-1-32-cluster-class-v1.tgz"
	addonTgz   = "openstack-scs-1-32-cluster-addon-v1.tgz"
)

func tgz(t *testing.T, files map[string]string, links map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for n, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Size: int64(len(body)), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	for n, target := range links {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeSymlink, Linkname: target}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLoad(t *testing.T) {
	write := func(file, content string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeBytes := func(file string, data []byte) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(files ...string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			for _, f := range files {
				if err := os.Remove(filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	metadata := func(stack, k8s, addon string) string {
		return "versions:\n  clusterStack: " + stack + "\n  kubernetes: " + k8s + "\n  components:\n    clusterAddon: " + addon + "\n"
	}
	tests := []struct {
		name     string
		opts     fixtures.Options
		release  name.Release // defaults to the fixture's
		mutate   func(*testing.T, string)
		limits   archive.Limits
		wantFile string
		wantErr  error
	}{
		{name: "config convention"},
		{name: "values convention", opts: fixtures.Options{Convention: release.AddonConventionValues}},
		{name: "node images and hash version", opts: fixtures.Options{StackVersion: "v0-sha.abc1234", NodeImages: true}},
		{name: "pre-release", opts: fixtures.Options{StackVersion: "v2-alpha.10"}},
		{name: "different addon version", opts: fixtures.Options{StackVersion: "v4", AddonVersion: "v2"}},
		{name: "dashed version in metadata", mutate: write("metadata.yaml", metadata("v1", "v1.32.5", "v1"))},
		{name: "invalid release name", release: name.Release{Provider: "open-stack", Stack: "scs", Kubernetes: name.KubernetesMinor{Major: 1, Minor: 32}, Version: name.Stable(1)}, wantErr: name.ErrInvalidName},
		{name: "missing metadata", mutate: remove("metadata.yaml"), wantFile: "metadata.yaml", wantErr: release.ErrMissingFile},
		{name: "broken metadata YAML", mutate: write("metadata.yaml", "versions: [\n"), wantFile: "metadata.yaml", wantErr: release.ErrMalformedMetadata},
		{name: "metadata without clusterStack", mutate: write("metadata.yaml", metadata("", "v1.32.5", "v1")), wantFile: "metadata.yaml", wantErr: release.ErrMalformedMetadata},
		{name: "metadata without kubernetes", mutate: write("metadata.yaml", metadata("v1", "", "v1")), wantFile: "metadata.yaml", wantErr: release.ErrMalformedMetadata},
		{name: "metadata without addon", mutate: write("metadata.yaml", metadata("v1", "v1.32.5", "")), wantFile: "metadata.yaml", wantErr: release.ErrMalformedMetadata},
		{name: "metadata with bad version", mutate: write("metadata.yaml", metadata("1", "v1.32.5", "v1")), wantFile: "metadata.yaml", wantErr: release.ErrMalformedMetadata},
		{name: "metadata with bad kubernetes", mutate: write("metadata.yaml", metadata("v1", "latest", "v1")), wantFile: "metadata.yaml", wantErr: release.ErrMalformedMetadata},
		{name: "name and stack version disagree", mutate: write("metadata.yaml", metadata("v2", "v1.32.5", "v1")), wantFile: "metadata.yaml", wantErr: release.ErrInconsistent},
		{name: "name and kubernetes disagree", mutate: write("metadata.yaml", metadata("v1", "v1.33.0", "v1")), wantFile: "metadata.yaml", wantErr: release.ErrInconsistent},
		{name: "missing cluster-class chart", mutate: remove(classChart), wantFile: classChart, wantErr: release.ErrMissingFile},
		{name: "missing addon archive", mutate: remove(addonTgz), wantFile: addonTgz, wantErr: release.ErrMissingFile},
		{name: "missing addon config and values", mutate: remove("clusteraddon.yaml"), wantFile: "clusteraddon.yaml", wantErr: release.ErrMissingFile},
		{name: "cluster-class chart is no chart", mutate: writeBytes(classChart, tgz(t, map[string]string{"README": "x"}, nil)), wantFile: classChart, wantErr: release.ErrMalformedFile},
		{name: "cluster-class chart is no archive", mutate: write(classChart, "plain text"), wantFile: classChart, wantErr: archive.ErrMalformed},
		{name: "path traversal in chart", mutate: writeBytes(classChart, tgz(t, map[string]string{"c/Chart.yaml": "name: c", "../../evil": "x"}, nil)), wantFile: classChart, wantErr: archive.ErrUnsafePath},
		{name: "absolute path in addons", mutate: writeBytes(addonTgz, tgz(t, map[string]string{"cni/Chart.yaml": "name: c", "/etc/evil": "x"}, nil)), wantFile: addonTgz, wantErr: archive.ErrUnsafePath},
		{name: "symlink out of addons", mutate: writeBytes(addonTgz, tgz(t, map[string]string{"cni/Chart.yaml": "name: c"}, map[string]string{"cni/x": "../../../etc/passwd"})), wantFile: addonTgz, wantErr: archive.ErrUnsafePath},
		{name: "oversized archive", limits: archive.Limits{MaxBytes: 100, MaxFiles: 1000}, wantFile: classChart, wantErr: archive.ErrLimitExceeded},
		{name: "too many files", limits: archive.Limits{MaxBytes: 1 << 20, MaxFiles: 3}, wantFile: classChart, wantErr: archive.ErrLimitExceeded},
		{name: "addon config in the reference's helmChartName spelling", mutate: write("clusteraddon.yaml", "addonStages:\n  AfterControlPlaneInitialized:\n    - helmChartName: cni\n      action: apply\n")},
		{name: "addon config with unknown helmChartName", mutate: write("clusteraddon.yaml", "addonStages:\n  AfterControlPlaneInitialized:\n    - helmChartName: ccm\n      action: apply\n"), wantFile: "clusteraddon.yaml", wantErr: release.ErrMalformedFile},
		{name: "addon config names unknown chart", mutate: write("clusteraddon.yaml", "addonStages:\n  AfterControlPlaneInitialized:\n    - name: ccm\n      action: apply\n"), wantFile: "clusteraddon.yaml", wantErr: release.ErrMalformedFile},
		{name: "addon config bad action", mutate: write("clusteraddon.yaml", "addonStages:\n  AfterControlPlaneInitialized:\n    - name: cni\n      action: install\n"), wantFile: "clusteraddon.yaml", wantErr: release.ErrMalformedFile},
		{name: "addon plan whose condition does not compile", mutate: write("clusteraddon.yaml", "addonStages:\n  BeforeClusterUpgrade:\n    - name: cni\n      action: apply\n      waitForPreCondition:\n        objects: [{key: a, apiVersion: v1, kind: ConfigMap, name: x}]\n        conditions: 'a.data ==='\n"), wantFile: "clusteraddon.yaml", wantErr: plan.ErrInvalidConfig},
		{name: "addon plan with an unknown hook", mutate: write("clusteraddon.yaml", "addonStages:\n  AfterClusterCreate:\n    - name: cni\n      action: apply\n"), wantFile: "clusteraddon.yaml", wantErr: plan.ErrInvalidConfig},
		{name: "addon config broken YAML", mutate: write("clusteraddon.yaml", "addonStages: ["), wantFile: "clusteraddon.yaml", wantErr: release.ErrMalformedFile},
		{name: "broken node images", opts: fixtures.Options{NodeImages: true}, mutate: write("node-images.yaml", "- ["), wantFile: "node-images.yaml", wantErr: release.ErrMalformedFile},
		{name: "node image that cannot be downloaded", opts: fixtures.Options{NodeImages: true}, mutate: write("node-images.yaml", "openStackNodeImages:\n  - url: ftp://images.example/a.qcow2\n    createOpts: {name: a}\n"), wantFile: "node-images.yaml", wantErr: release.ErrInvalidNodeImages},
		{name: "node images beyond the size bound", opts: fixtures.Options{NodeImages: true}, mutate: write("node-images.yaml", "openStackNodeImages: []\n#"+strings.Repeat("x", 1<<20)), wantFile: "node-images.yaml", wantErr: release.ErrMalformedFile},
		{name: "sub-directory", mutate: func(t *testing.T, dir string) { _ = os.Mkdir(filepath.Join(dir, "sub"), 0o755) }, wantErr: release.ErrMalformedFile},
		{name: "symlinked file", mutate: func(t *testing.T, dir string) { _ = os.Symlink("/etc/passwd", filepath.Join(dir, "x")) }, wantErr: release.ErrMalformedFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := fixtures.Build(t.TempDir(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if tt.mutate != nil {
				tt.mutate(t, dir)
			}
			rn := tt.release
			if rn == (name.Release{}) {
				rn = tt.opts.Release()
			}
			r, err := release.Load(dir, rn, release.Options{Limits: tt.limits})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				checkRelease(t, r, tt.opts)
				return
			}
			var ie *release.InvalidError
			if !errors.As(err, &ie) || !errors.Is(err, release.ErrInvalid) {
				t.Fatalf("got %v, want an *InvalidError", err)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, want %v", err, tt.wantErr)
			}
			if ie.File != tt.wantFile {
				t.Errorf("file %q, want %q", ie.File, tt.wantFile)
			}
			if tt.wantFile != "" && !strings.Contains(err.Error(), tt.wantFile) {
				t.Errorf("error %q does not name %s", err, tt.wantFile)
			}
		})
	}
}

func checkRelease(t *testing.T, r *release.Release, opts fixtures.Options) {
	t.Helper()
	if r.Name.String() != opts.ReleaseName() {
		t.Errorf("name %s", r.Name)
	}
	for _, p := range []string{r.ClusterClassChart, r.ClusterAddonArchive} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	switch r.AddonConvention {
	case release.AddonConventionConfig:
		if r.AddonPlan == nil || len(r.AddonPlan.SteadyCharts()) == 0 || r.ClusterAddonValues != "" {
			t.Errorf("config convention with plan %+v, values %q", r.AddonPlan, r.ClusterAddonValues)
		}
	case release.AddonConventionValues:
		if r.ClusterAddonValues == "" || r.AddonPlan != nil {
			t.Errorf("values convention with plan %+v, values %q", r.AddonPlan, r.ClusterAddonValues)
		}
	default:
		t.Errorf("convention %q", r.AddonConvention)
	}
	want := opts.Convention
	if want == "" {
		want = release.AddonConventionConfig
	}
	if r.AddonConvention != want {
		t.Errorf("convention %q, want %q", r.AddonConvention, want)
	}
	if (len(r.NodeImages) > 0) != opts.NodeImages {
		t.Errorf("node images %+v", r.NodeImages)
	}
}

func TestDirDigest(t *testing.T) {
	a, err := fixtures.Build(t.TempDir(), fixtures.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := fixtures.Build(t.TempDir(), fixtures.Options{})
	if err != nil {
		t.Fatal(err)
	}
	da, err := release.DirDigest(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := release.DirDigest(b)
	if err != nil {
		t.Fatal(err)
	}
	if da != db || !strings.HasPrefix(da, "sha256:") {
		t.Fatalf("identical builds differ: %s %s", da, db)
	}
	if err := os.WriteFile(filepath.Join(b, "metadata.yaml"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if dc, _ := release.DirDigest(b); dc == da {
		t.Error("digest did not change with the content")
	}
}
