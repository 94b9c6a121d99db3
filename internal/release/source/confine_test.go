package source

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

// TestOCIEgressRefused: with the default policy, a registry on loopback or at the metadata
// address is refused when connecting, as a configuration error (terminal) naming the rule and
// the flag that relaxes it.
func TestOCIEgressRefused(t *testing.T) {
	host := fixtures.StartRegistry(t, nil)
	_, port, _ := strings.Cut(host, ":")
	for _, registry := range []string{host, "localhost:" + port, "[::1]:" + port, "169.254.169.254"} {
		t.Run(registry, func(t *testing.T) {
			src, err := New(Config{Type: TypeOCI, OCI: OCIConfig{Registry: registry, Repository: repoPath, PlainHTTP: true}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err = src.List(ctx)
			if !errors.Is(err, egress.ErrRefused) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("List: got %v, want a refusal classified as ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), egress.FlagAllowCIDRs) {
				t.Errorf("%q does not name the flag that relaxes the rule", err)
			}
		})
	}
}

// TestGitHubEgressRefused: the GitHub source's default client refuses a loopback API, and a
// storage redirect from an allowed API host to a refused address.
func TestGitHubEgressRefused(t *testing.T) {
	f := newFakeGitHub(t)
	dir, err := fixtures.Build(t.TempDir(), fixtures.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.addRelease(t, "openstack-scs-1-32-v1", dir, true, nil)

	g, err := NewGitHub(GitHubConfig{Owner: "o", Repository: "r", APIURL: f.api.URL}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.List(context.Background()); !errors.Is(err, egress.ErrRefused) || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("List with the default policy: got %v, want a refusal", err)
	}

	// Only the API server's address is allowed: the redirect to storage (another loopback
	// address in the real world: the API's answer points anywhere) must be refused.
	apiOnly := &egress.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	storage := &httptest.Server{Listener: l, Config: &http.Server{Handler: f.storage.Config.Handler, ReadHeaderTimeout: time.Minute}}
	storage.Start()
	t.Cleanup(storage.Close)
	f.storageURL = storage.URL
	// The double works: with loopback allowed the redirect is followed.
	g, err = NewGitHub(GitHubConfig{Owner: "o", Repository: "r", APIURL: f.api.URL}, egress.AllowLoopbackForTests().Client(time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Fetch(context.Background(), name.MustParse("openstack-scs-1-32-v1"), t.TempDir()); err != nil {
		t.Fatalf("Fetch with loopback allowed: %v", err)
	}
	g, err = NewGitHub(GitHubConfig{Owner: "o", Repository: "r", APIURL: f.api.URL}, apiOnly.Client(time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	err = g.Fetch(context.Background(), name.MustParse("openstack-scs-1-32-v1"), t.TempDir())
	if !errors.Is(err, egress.ErrRefused) {
		t.Fatalf("Fetch through a redirect to 127.0.0.2: got %v, want a refusal", err)
	}
}

// TestLocalConfined: a local source only reads below a served root; everything else is refused
// with one message, whether the path exists or not.
func TestLocalConfined(t *testing.T) {
	base := t.TempDir()
	served := filepath.Join(base, "served")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{served, outside, filepath.Join(served, "releases")} {
		mkdir(t, d)
	}
	if _, err := fixtures.Build(outside, fixtures.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(served, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(served, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name  string
		path  string
		roots []string
	}{
		{name: "no root configured", path: filepath.Join(served, "releases")},
		{name: "root /", path: "/", roots: []string{"/"}},
		{name: "/proc/self below root /", path: "/proc/self", roots: []string{"/"}},
		{name: "/proc/self", path: "/proc/self", roots: []string{served}},
		{name: "root itself is /proc", path: "/proc/self", roots: []string{"/proc"}},
		{name: "existing path outside", path: outside, roots: []string{served}},
		{name: "missing path outside", path: filepath.Join(base, "missing"), roots: []string{served}},
		{name: "missing path inside", path: filepath.Join(served, "missing"), roots: []string{served}},
		{name: "dot-dot out", path: served + "/../outside", roots: []string{served}},
		{name: "symlink out", path: filepath.Join(served, "escape"), roots: []string{served}},
		{name: "a file", path: filepath.Join(served, "file"), roots: []string{served}},
		{name: "relative", path: "served", roots: []string{served}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{Type: TypeLocal, Local: LocalConfig{Path: tt.path}, LocalRoots: tt.roots})
			if !errors.Is(err, ErrLocalPathRefused) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrLocalPathRefused", err)
			}
			// The same words for every refusal: nothing tells an existing path from a missing one.
			want := "local source path " + `"` + tt.path + `": ` + ErrLocalPathRefused.Error() + " (set with " + FlagLocalSourceRoot + "): " + ErrInvalidConfig.Error()
			if err.Error() != want {
				t.Errorf("got %q, want %q", err, want)
			}
		})
	}

	// Inside the root: the root itself and a directory below it are served.
	for _, p := range []string{served, filepath.Join(served, "releases")} {
		if _, err := New(Config{Type: TypeLocal, Local: LocalConfig{Path: p}, LocalRoots: []string{served}}); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}

	// A release file that links out of the served root is refused when fetched.
	rel := filepath.Join(served, "releases", "openstack-scs-1-32-v1")
	if _, err := fixtures.Build(filepath.Join(served, "releases"), fixtures.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "openstack-scs-1-32-v1", "metadata.yaml"), filepath.Join(rel, "stolen.yaml")); err != nil {
		t.Fatal(err)
	}
	src, err := NewLocal(filepath.Join(served, "releases"), 0, served)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Fetch(context.Background(), name.MustParse("openstack-scs-1-32-v1"), t.TempDir()); !errors.Is(err, ErrInvalidArtifact) || !strings.Contains(err.Error(), "stolen.yaml") {
		t.Fatalf("Fetch with a link out of the root: got %v, want ErrInvalidArtifact naming the file", err)
	}
}

func TestCheckLocalRoot(t *testing.T) {
	for root, ok := range map[string]bool{"/srv/releases": true, "/": false, "/proc": false, "/proc/self": false, "/sys/x": false, "/dev": false, "rel": false, "/srv/../": false} {
		if err := CheckLocalRoot(root); (err == nil) != ok {
			t.Errorf("CheckLocalRoot(%q) = %v", root, err)
		}
	}
}
