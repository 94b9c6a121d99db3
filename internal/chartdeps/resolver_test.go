package chartdeps

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"sigs.k8s.io/yaml"

	"github.com/seed-a720dd5e/clusterstack-operator/test/helmrepo"
)

// Host names the test charts use; helmrepo.Client routes them to the doubles.
const (
	repoHost     = "charts.example.com"
	registryHost = "registry.example.com"
	repoURL      = "https://" + repoHost
	ociRepo      = "oci://" + registryHost + "/charts"
)

type doubles struct {
	repo     *helmrepo.Repo
	registry *helmrepo.Registry
	client   *http.Client
}

func newDoubles(t *testing.T) *doubles {
	t.Helper()
	d := &doubles{repo: helmrepo.NewRepo(t), registry: helmrepo.NewRegistry(t)}
	d.client = helmrepo.Client(map[string]string{repoHost: d.repo.Host(), registryHost: d.registry.Host()})
	return d
}

func (d *doubles) requests() int { return d.repo.Requests() + d.registry.Requests() }

func newResolver(t *testing.T, dir string, d *doubles, mod ...func(*Options)) *Resolver {
	t.Helper()
	opts := Options{Dir: dir, HTTPClient: d.client}
	for _, m := range mod {
		m(&opts)
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// writeChart writes a parent chart directory whose Chart.yaml declares deps, without charts/.
func writeChart(t *testing.T, name string, deps []*chart.Dependency, lock *chart.Lock) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(filepath.Join(dir, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	md := &chart.Metadata{APIVersion: chart.APIVersionV2, Name: name, Version: "v1", Dependencies: deps}
	write := func(file string, v any) {
		data, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Chart.yaml", md)
	if lock != nil {
		write("Chart.lock", lock)
	}
	if err := os.WriteFile(filepath.Join(dir, "templates", "own.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: own\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// lockFor returns a Chart.lock that Helm would write for deps pinned to versions.
func lockFor(t *testing.T, deps []*chart.Dependency, versions ...string) *chart.Lock {
	t.Helper()
	var locked []*chart.Dependency
	for i, d := range deps {
		locked = append(locked, &chart.Dependency{Name: d.Name, Repository: d.Repository, Version: versions[i]})
	}
	digest, err := hashReq(deps, locked)
	if err != nil {
		t.Fatal(err)
	}
	return &chart.Lock{Digest: digest, Dependencies: locked}
}

// versionsOf loads a resolved chart and returns its sub-charts' versions by name.
func versionsOf(t *testing.T, p string) map[string]string {
	t.Helper()
	ch, err := loader.Load(p)
	if err != nil {
		t.Fatalf("loading the resolved chart: %v", err)
	}
	out := map[string]string{}
	for _, sub := range ch.Dependencies() {
		out[sub.Name()] = sub.Metadata.Version
	}
	return out
}

func TestResolveVersions(t *testing.T) {
	d := newDoubles(t)
	for _, v := range []string{"1.18.8", "1.18.9", "1.19.0-rc.1", "1.17.4"} {
		d.repo.Add(t, helmrepo.ConfigMapChart("cilium", v))
	}
	for _, v := range []string{"3.12.2", "3.13.0", "3.13.1-beta.1"} {
		d.registry.Push(t, d.client, registryHost, "charts", helmrepo.ConfigMapChart("metrics-server", v))
	}
	cilium := func(v string) *chart.Dependency {
		return &chart.Dependency{Name: "cilium", Alias: "cni", Version: v, Repository: repoURL + "/"}
	}
	ms := func(v string) *chart.Dependency {
		return &chart.Dependency{Name: "metrics-server", Version: v, Repository: ociRepo}
	}
	for _, tc := range []struct {
		name string
		deps []*chart.Dependency
		// lock pins these versions (one per dependency); stale makes the lock's digest wrong.
		lock  []string
		stale bool
		want  map[string]string
	}{
		{name: "exact", deps: []*chart.Dependency{cilium("1.18.8"), ms("3.12.2")}, want: map[string]string{"cilium": "1.18.8", "metrics-server": "3.12.2"}},
		{name: "ranges take the newest stable match", deps: []*chart.Dependency{cilium("~1.18.0"), ms("^3.12")}, want: map[string]string{"cilium": "1.18.9", "metrics-server": "3.13.0"}},
		{name: "x-range", deps: []*chart.Dependency{cilium("1.18.x")}, want: map[string]string{"cilium": "1.18.9"}},
		{name: "pre-release constraint", deps: []*chart.Dependency{cilium(">=1.19.0-0")}, want: map[string]string{"cilium": "1.19.0-rc.1"}},
		{name: "Chart.lock pins", deps: []*chart.Dependency{cilium("^1.17.0"), ms("^3.12")}, lock: []string{"1.17.4", "3.12.2"},
			want: map[string]string{"cilium": "1.17.4", "metrics-server": "3.12.2"}},
		{name: "a stale Chart.lock is ignored", deps: []*chart.Dependency{cilium("~1.18.0")}, lock: []string{"1.17.4"}, stale: true,
			want: map[string]string{"cilium": "1.18.9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lock *chart.Lock
			if tc.lock != nil {
				lock = lockFor(t, tc.deps, tc.lock...)
				if tc.stale {
					lock.Digest = "sha256:" + strings.Repeat("0", 64)
				}
			}
			parent := writeChart(t, "cni", tc.deps, lock)
			r := newResolver(t, t.TempDir(), d)
			out, err := r.Resolve(context.Background(), parent)
			if err != nil {
				t.Fatal(err)
			}
			got := versionsOf(t, out)
			for n, v := range tc.want {
				if got[n] != v {
					t.Errorf("%s: got version %q, want %q (all: %v)", n, got[n], v, got)
				}
			}
			// The parent's own files are unchanged.
			ch, err := loader.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(ch.Templates) != 1 || ch.Templates[0].Name != "templates/own.yaml" {
				t.Errorf("templates of the resolved chart: %v", ch.Templates)
			}
		})
	}
}

func TestNothingMissingIsUnchanged(t *testing.T) {
	d := newDoubles(t)
	parent := writeChart(t, "plain", nil, nil)
	r := newResolver(t, t.TempDir(), d)
	out, err := r.Resolve(context.Background(), parent)
	if err != nil || out != parent {
		t.Fatalf("Resolve = %q, %v; want the chart itself", out, err)
	}
	if n := d.requests(); n != 0 {
		t.Errorf("%d requests for a chart without dependencies", n)
	}
}

func TestResolveErrors(t *testing.T) {
	d := newDoubles(t)
	d.repo.Add(t, helmrepo.ConfigMapChart("cilium", "1.18.9"))
	d.repo.Add(t, helmrepo.ConfigMapChart("tampered", "1.0.0"))
	d.repo.SetDigest("tampered", "1.0.0", "sha256:"+strings.Repeat("ab", 32))
	down := helmrepo.NewRepo(t)
	down.FailWith(http.StatusServiceUnavailable)
	locked := helmrepo.NewRepo(t)
	locked.Add(t, helmrepo.ConfigMapChart("private", "1.0.0"))
	locked.RequireBasicAuth("robot", "s3cret")
	client := helmrepo.Client(map[string]string{repoHost: d.repo.Host(), "down.example.com": down.Host(), "private.example.com": locked.Host(), registryHost: d.registry.Host()})

	for _, tc := range []struct {
		name       string
		dep        *chart.Dependency
		opts       func(*Options)
		class      error
		cause      error
		repository string
	}{
		{name: "no matching version", dep: &chart.Dependency{Name: "cilium", Version: "^2.0.0", Repository: repoURL}, class: ErrUnresolvable, cause: ErrNoMatchingVersion},
		{name: "chart not in the index", dep: &chart.Dependency{Name: "calico", Version: "1.0.0", Repository: repoURL}, class: ErrUnresolvable, cause: ErrChartNotFound},
		{name: "digest mismatch", dep: &chart.Dependency{Name: "tampered", Version: "1.0.0", Repository: repoURL}, class: ErrUnresolvable, cause: ErrDigestMismatch},
		{name: "repository down", dep: &chart.Dependency{Name: "cilium", Version: "1.18.9", Repository: "https://down.example.com"}, class: ErrUnavailable, cause: ErrUnavailable},
		{name: "no credentials", dep: &chart.Dependency{Name: "private", Version: "1.0.0", Repository: "https://private.example.com"}, class: ErrUnresolvable, cause: ErrUnauthorized},
		{name: "wrong credentials", dep: &chart.Dependency{Name: "private", Version: "1.0.0", Repository: "https://private.example.com"}, class: ErrUnresolvable, cause: ErrUnauthorized,
			opts: func(o *Options) {
				o.Credentials = StaticCredentials{{URL: "https://private.example.com", Credential: Credential{Username: "robot", Password: "wrong"}}}
			}},
		{name: "index too large", dep: &chart.Dependency{Name: "cilium", Version: "1.18.9", Repository: repoURL}, class: ErrUnresolvable, cause: ErrTooLarge,
			opts: func(o *Options) { o.MaxIndexBytes = 64 }},
		{name: "archive too large", dep: &chart.Dependency{Name: "cilium", Version: "1.18.9", Repository: repoURL}, class: ErrUnresolvable, cause: ErrTooLarge,
			opts: func(o *Options) { o.MaxChartBytes = 64 }},
		{name: "repository name instead of URL", dep: &chart.Dependency{Name: "cilium", Version: "1.18.9", Repository: "@cilium"}, class: ErrUnresolvable, cause: ErrUnsupportedRepository},
		{name: "file repository", dep: &chart.Dependency{Name: "cilium", Version: "1.18.9", Repository: "file://../cilium"}, class: ErrUnresolvable, cause: ErrUnsupportedRepository},
		{name: "OCI chart not pushed", dep: &chart.Dependency{Name: "absent", Version: "1.0.0", Repository: ociRepo}, class: ErrUnresolvable, cause: ErrChartNotFound},
		{name: "OCI no matching tag", dep: &chart.Dependency{Name: "absent", Version: "^1.0.0", Repository: ociRepo}, class: ErrUnresolvable, cause: ErrChartNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := writeChart(t, "addon", []*chart.Dependency{tc.dep}, nil)
			opts := Options{Dir: t.TempDir(), HTTPClient: client}
			if tc.opts != nil {
				tc.opts(&opts)
			}
			r, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Resolve(context.Background(), parent)
			if !errors.Is(err, tc.class) || !errors.Is(err, tc.cause) {
				t.Fatalf("error %v; want %v and %v", err, tc.class, tc.cause)
			}
			var de *DependencyError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DependencyError", err)
			}
			if de.Parent != "addon" || de.Name != tc.dep.Name || de.Repository != tc.dep.Repository {
				t.Errorf("error names %q/%q/%q; want addon/%s/%s", de.Parent, de.Name, de.Repository, tc.dep.Name, tc.dep.Repository)
			}
			if !strings.Contains(err.Error(), tc.dep.Name) || !strings.Contains(err.Error(), "addon") {
				t.Errorf("message %q does not name the chart and the dependency", err)
			}
		})
	}
}

func TestCredentials(t *testing.T) {
	locked := helmrepo.NewRepo(t)
	locked.Add(t, helmrepo.ConfigMapChart("private", "1.0.0"))
	locked.RequireBasicAuth("robot", "s3cret")
	client := helmrepo.Client(map[string]string{"private.example.com": locked.Host()})
	r, err := New(Options{Dir: t.TempDir(), HTTPClient: client, Credentials: StaticCredentials{
		{URL: "https://other.example.com", Credential: Credential{Username: "x", Password: "y"}},
		{URL: "https://private.example.com/", Credential: Credential{Username: "robot", Password: "s3cret"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	parent := writeChart(t, "addon", []*chart.Dependency{{Name: "private", Version: "1.0.0", Repository: "https://private.example.com"}}, nil)
	out, err := r.Resolve(context.Background(), parent)
	if err != nil {
		t.Fatal(err)
	}
	if v := versionsOf(t, out)["private"]; v != "1.0.0" {
		t.Errorf("private: %q", v)
	}
}

func TestMatchCredentials(t *testing.T) {
	entries := []RepositoryCredential{
		{URL: "oci://registry.example.com", Credential: Credential{Token: "registry"}},
		{URL: "oci://registry.example.com/team/", Credential: Credential{Token: "team"}},
		{URL: "https://charts.example.com/stable", Credential: Credential{Username: "u", Password: "p"}},
	}
	for repo, want := range map[string]string{
		"oci://registry.example.com/charts":      "registry",
		"oci://registry.example.com/team/charts": "team",
		"oci://registry.example.com/teamx":       "registry",
		"https://charts.example.com/stable/":     "u",
		"https://charts.example.com/stablex":     "",
		"https://other.example.com":              "",
	} {
		c := Match(entries, repo)
		got := c.Token + c.Username
		if got != want {
			t.Errorf("Match(%q) = %+v; want %q", repo, c, want)
		}
	}
}

func TestParseRepositories(t *testing.T) {
	got, err := ParseRepositories([]byte(`apiVersion: ""
repositories:
- name: cilium
  url: https://helm.example.com/cilium
  username: robot
  password: s3cret
  caFile: ""
- url: oci://registry.example.com/charts
  token: t0ken
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Username != "robot" || got[0].Password != "s3cret" || got[1].Token != "t0ken" {
		t.Errorf("ParseRepositories = %+v", got)
	}
	if _, err := ParseRepositories([]byte("repositories:\n- username: x\n")); err == nil {
		t.Error("an entry without url was accepted")
	}
}

// The digest Helm writes into Chart.lock, checked against a lock published with an SCS stack:
// the ccm addon's dependency on openstack-cloud-controller-manager 2.33.1.
func TestHashReqMatchesHelm(t *testing.T) {
	const repo = "https://kubernetes.github.io/cloud-provider-openstack"
	req := []*chart.Dependency{{Name: "openstack-cloud-controller-manager", Alias: "openstack-cloud-controller-manager", Repository: repo, Version: "2.33.1"}}
	lock := []*chart.Dependency{{Name: "openstack-cloud-controller-manager", Repository: repo, Version: "2.33.1"}}
	got, err := hashReq(req, lock)
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256:f715cda5fd4273e69571d3dafac7c42e1a3bc03b6a6970a0e7a0fefca510c81b"; got != want {
		t.Errorf("hashReq = %s; want %s", got, want)
	}
}

func TestCacheSharedAndKeptAcrossRestarts(t *testing.T) {
	d := newDoubles(t)
	d.repo.Add(t, helmrepo.ConfigMapChart("cilium", "1.18.9"))
	d.registry.Push(t, d.client, registryHost, "charts", helmrepo.ConfigMapChart("metrics-server", "3.13.0"))
	deps := []*chart.Dependency{
		{Name: "cilium", Version: "1.18.9", Repository: repoURL},
		{Name: "metrics-server", Version: "3.13.0", Repository: ociRepo},
	}
	dir := t.TempDir()
	ctx := context.Background()

	r := newResolver(t, dir, d)
	before := d.requests()
	if _, err := r.Resolve(ctx, writeChart(t, "release-1", deps, nil)); err != nil {
		t.Fatal(err)
	}
	if d.requests() == before {
		t.Fatal("the first resolution made no requests")
	}

	// A second release (another chart, same dependencies) fetches nothing.
	before = d.requests()
	second := writeChart(t, "release-2", deps, nil)
	if _, err := r.Resolve(ctx, second); err != nil {
		t.Fatal(err)
	}
	if n := d.requests() - before; n != 0 {
		t.Errorf("a second release sharing the dependencies made %d requests", n)
	}

	// A restarted operator (a new resolver on the same directory) fetches nothing either.
	r2 := newResolver(t, dir, d)
	before = d.requests()
	out, err := r2.Resolve(ctx, writeChart(t, "release-3", deps, nil))
	if err != nil {
		t.Fatal(err)
	}
	if n := d.requests() - before; n != 0 {
		t.Errorf("after a restart, %d requests", n)
	}
	if v := versionsOf(t, out); v["cilium"] != "1.18.9" || v["metrics-server"] != "3.13.0" {
		t.Errorf("versions after a restart: %v", v)
	}

	// A damaged archive in the cache is fetched again, not used.
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil || len(entries) == 0 {
		t.Fatalf("cached archives: %v, %v", entries, err)
	}
	for _, e := range entries {
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", e.Name()), []byte("damaged"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r3 := newResolver(t, dir, d)
	before = d.requests()
	out, err = r3.Resolve(ctx, writeChart(t, "release-4", deps, nil))
	if err != nil {
		t.Fatal(err)
	}
	if d.requests() == before {
		t.Error("damaged cache entries were used")
	}
	if v := versionsOf(t, out); v["cilium"] != "1.18.9" {
		t.Errorf("versions after repair: %v", v)
	}
}

func TestRangesAskAgainAfterTTL(t *testing.T) {
	d := newDoubles(t)
	d.repo.Add(t, helmrepo.ConfigMapChart("cilium", "1.18.8"))
	now := time.Now()
	clock := func() time.Time { return now }
	r := newResolver(t, t.TempDir(), d, func(o *Options) { o.Now = clock })
	parent := writeChart(t, "cni", []*chart.Dependency{{Name: "cilium", Version: "~1.18.0", Repository: repoURL}}, nil)
	ctx := context.Background()
	out, err := r.Resolve(ctx, parent)
	if err != nil || versionsOf(t, out)["cilium"] != "1.18.8" {
		t.Fatalf("first: %v %v", out, err)
	}
	d.repo.Add(t, helmrepo.ConfigMapChart("cilium", "1.18.9"))
	before := d.requests()
	if out, err = r.Resolve(ctx, parent); err != nil || versionsOf(t, out)["cilium"] != "1.18.8" {
		t.Fatalf("within the TTL: %v %v", out, err)
	}
	if n := d.requests() - before; n != 0 {
		t.Errorf("%d requests within the TTL", n)
	}
	now = now.Add(DefaultIndexTTL + time.Second)
	if out, err = r.Resolve(ctx, parent); err != nil || versionsOf(t, out)["cilium"] != "1.18.9" {
		t.Fatalf("after the TTL: %v %v", out, err)
	}
	// The repository goes down: the last index still answers.
	d.repo.FailWith(http.StatusBadGateway)
	now = now.Add(DefaultIndexTTL + time.Second)
	if out, err = r.Resolve(ctx, parent); err != nil || versionsOf(t, out)["cilium"] != "1.18.9" {
		t.Fatalf("with the repository down: %v %v", out, err)
	}
}

// Credentials written into a repository URL never reach an error message (conditions, events).
func TestErrorsHideURLCredentials(t *testing.T) {
	down := helmrepo.NewRepo(t)
	down.FailWith(http.StatusServiceUnavailable)
	client := helmrepo.Client(map[string]string{"down.example.com": down.Host()})
	r, err := New(Options{Dir: t.TempDir(), HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	parent := writeChart(t, "addon", []*chart.Dependency{{Name: "cilium", Version: "1.0.0", Repository: "https://robot:s3cret@down.example.com/charts?token=t0ken"}}, nil)
	_, err = r.Resolve(context.Background(), parent)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v; want ErrUnavailable", err)
	}
	var de *DependencyError
	if !errors.As(err, &de) || strings.Contains(de.Repository, "s3cret") || strings.Contains(de.Repository, "t0ken") {
		t.Errorf("DependencyError.Repository = %q", de.Repository)
	}
	if msg := err.Error(); strings.Contains(msg, "s3cret") || strings.Contains(msg, "t0ken") {
		t.Errorf("message %q carries the URL's credentials", msg)
	}
}
