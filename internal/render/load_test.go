package render_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/archive"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
)

const secret = "operator-service-account-token"

// filesGetChart writes a chart whose template puts .Files.Get of path into a ConfigMap.
func filesGetChart(t *testing.T, dir, path string) {
	t.Helper()
	write(t, filepath.Join(dir, "Chart.yaml"), "apiVersion: v2\nname: leak\nversion: 0.1.0\n")
	write(t, filepath.Join(dir, "templates", "cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leak\ndata:\n  stolen: {{ .Files.Get "+`"`+path+`"`+" | quote }}\n")
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestChartFilesStayInside: .Files only holds the chart's own verified files, whatever path a
// template asks for, and links on disk are refused instead of followed.
func TestChartFilesStayInside(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, base, chart string) // base holds chart/ and secret.txt
		get     string
		wantErr error
		naming  string // the entry the error must name
	}{
		{name: "dot-dot path", get: "../secret.txt"},
		{name: "absolute path", get: "SECRET_ABS"},
		{name: "proc self", get: "/proc/self/environ"},
		{
			name: "symlink to an outside file",
			setup: func(t *testing.T, base, chart string) {
				symlink(t, filepath.Join(base, "secret.txt"), filepath.Join(chart, "files", "token"))
			},
			get:     "files/token",
			wantErr: archive.ErrLink,
			naming:  "files/token",
		},
		{
			name: "symlink chain",
			setup: func(t *testing.T, base, chart string) {
				// Each link alone stays inside the chart; together they reach base.
				if err := os.MkdirAll(filepath.Join(chart, "d"), 0o755); err != nil {
					t.Fatal(err)
				}
				symlink(t, "..", filepath.Join(chart, "d", "up"))
				symlink(t, "d/up/..", filepath.Join(chart, "a"))
			},
			get:     "a/secret.txt",
			wantErr: archive.ErrLink,
			naming:  "a",
		},
		{
			name:    "symlink to /proc/self",
			setup:   func(t *testing.T, base, chart string) { symlink(t, "/proc/self", filepath.Join(chart, "self")) },
			get:     "self/environ",
			wantErr: archive.ErrLink,
			naming:  "self",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			write(t, filepath.Join(base, "secret.txt"), secret)
			chart := filepath.Join(base, "chart")
			get := strings.ReplaceAll(tt.get, "SECRET_ABS", filepath.Join(base, "secret.txt"))
			filesGetChart(t, chart, get)
			if tt.setup != nil {
				tt.setup(t, base, chart)
			}
			objs, err := render.Chart(context.Background(), chart, render.Options{ReleaseName: "r", Namespace: "n"})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), `"`+tt.naming+`"`) {
					t.Errorf("%q does not name the entry %q", err, tt.naming)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != 1 {
				t.Fatalf("got %d objects", len(objs))
			}
			data, _ := objs[0].Object["data"].(map[string]any)
			if got, _ := data["stolen"].(string); got != "" {
				t.Fatalf(".Files.Get %q returned %q: content from outside the chart", get, got)
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestPackagedChartLinksRefused: a packaged chart is read with the release archive rules, so a
// link entry is refused by name (Helm's own archive loader would turn it into an empty file).
func TestPackagedChartLinksRefused(t *testing.T) {
	for _, typ := range []byte{tar.TypeSymlink, tar.TypeLink} {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		chartYAML := "apiVersion: v2\nname: c\nversion: 0.1.0\n"
		_ = tw.WriteHeader(&tar.Header{Name: "c/Chart.yaml", Typeflag: tar.TypeReg, Size: int64(len(chartYAML)), Mode: 0o644})
		_, _ = tw.Write([]byte(chartYAML))
		_ = tw.WriteHeader(&tar.Header{Name: "c/files/token", Typeflag: typ, Linkname: "c/Chart.yaml", Mode: 0o644})
		_ = tw.Close()
		_ = gz.Close()
		file := filepath.Join(t.TempDir(), "c-0.1.0.tgz")
		if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := render.Chart(context.Background(), file, render.Options{ReleaseName: "r"})
		if !errors.Is(err, archive.ErrLink) || !strings.Contains(err.Error(), `"c/files/token"`) {
			t.Errorf("type %q: got %v, want archive.ErrLink naming the entry", typ, err)
		}
	}
}

// TestHelmIgnore: the directory loader honours .helmignore like `helm template <dir>`.
func TestHelmIgnore(t *testing.T) {
	chart := t.TempDir()
	filesGetChart(t, chart, "notes/a.txt")
	write(t, filepath.Join(chart, "notes", "a.txt"), "kept")
	write(t, filepath.Join(chart, "templates", "ignored.yaml"), "this is not: [valid yaml")
	write(t, filepath.Join(chart, ".helmignore"), "templates/ignored.yaml\n")
	objs, err := render.Chart(context.Background(), chart, render.Options{ReleaseName: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := objs[0].Object["data"].(map[string]any); data["stolen"] != "kept" {
		t.Errorf("data: %v", data)
	}
}
