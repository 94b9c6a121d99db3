package chartdeps

import (
	"errors"
	"testing"
)

func TestIndexGet(t *testing.T) {
	idx, err := parseIndex([]byte(`apiVersion: v1
entries:
  cilium:
  - {version: 1.17.0, urls: [cilium-1.17.0.tgz]}
  - {version: not-a-version, urls: [broken.tgz]}
  - {version: 1.18.2, urls: [cilium-1.18.2.tgz]}
  - {version: v1.18.1, urls: [cilium-1.18.1.tgz]}
  - {version: 1.19.0-rc.1, urls: [cilium-1.19.0-rc.1.tgz]}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, version string
		want          string
		err           error
	}{
		{name: "cilium", version: "", want: "1.18.2"}, // the newest release, not the pre-release
		{name: "cilium", version: "~1.18.0", want: "1.18.2"},
		{name: "cilium", version: "1.17.0", want: "1.17.0"},
		{name: "cilium", version: "v1.18.1", want: "v1.18.1"}, // exactly as written
		{name: "cilium", version: "1.18.1", want: "v1.18.1"},
		{name: "cilium", version: ">=1.19.0-0", want: "1.19.0-rc.1"},
		{name: "cilium", version: "2.x", err: errNoChartVersion},
		{name: "calico", version: "1.0.0", err: errNoChartName},
	} {
		got, err := idx.get(tc.name, tc.version)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("get(%s, %q): %v, want %v", tc.name, tc.version, err, tc.err)
			}
			continue
		}
		if err != nil || got.Version != tc.want {
			t.Errorf("get(%s, %q) = %q, %v; want %q", tc.name, tc.version, got.Version, err, tc.want)
		}
	}
	if got := len(idx.Entries["cilium"]); got != 4 {
		t.Errorf("%d versions of cilium kept, want 4 (the one that is no semantic version goes)", got)
	}
}

func TestParseIndexRefuses(t *testing.T) {
	for name, data := range map[string]string{
		"empty":          "",
		"no apiVersion":  "entries: {}\n",
		"not an index":   "- a\n- b\n",
		"entries a list": "apiVersion: v1\nentries: [a]\n",
	} {
		if _, err := parseIndex([]byte(data)); err == nil {
			t.Errorf("%s: parsed, want an error", name)
		}
	}
}

func TestResolveReferenceURL(t *testing.T) {
	for _, tc := range []struct{ base, ref, want string }{
		{"https://charts.example/stable", "cilium-1.0.0.tgz", "https://charts.example/stable/cilium-1.0.0.tgz"},
		{"https://charts.example/stable/", "cilium-1.0.0.tgz", "https://charts.example/stable/cilium-1.0.0.tgz"},
		{"https://charts.example/stable?token=x", "charts/c.tgz", "https://charts.example/stable/charts/c.tgz?token=x"},
		{"https://charts.example/stable", "https://cdn.example/c.tgz", "https://cdn.example/c.tgz"},
		{"https://charts.example/stable", "/abs/c.tgz", "https://charts.example/abs/c.tgz"},
	} {
		got, err := resolveReferenceURL(tc.base, tc.ref)
		if err != nil || got != tc.want {
			t.Errorf("resolveReferenceURL(%q, %q) = %q, %v; want %q", tc.base, tc.ref, got, err, tc.want)
		}
	}
}
