package source

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

const repoPath = "kaas/cluster-stacks"

// pushFixture builds the release described by opts and pushes it to host.
func pushFixture(t testing.TB, host string, opts fixtures.Options) (dir string, desc ocispec.Descriptor) {
	t.Helper()
	dir, err := fixtures.Build(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	desc, err = fixtures.Push(context.Background(), dir, host+"/"+repoPath, opts.ReleaseName(), true)
	if err != nil {
		t.Fatal(err)
	}
	return dir, desc
}

func plainRepo(t testing.TB, host string) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(host + "/" + repoPath)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	return repo
}

func newOCI(t testing.TB, host string, mutate func(*OCIConfig)) Source {
	t.Helper()
	cfg := Config{Type: TypeOCI, OCI: OCIConfig{Registry: host, Repository: repoPath, PlainHTTP: true}, Egress: egress.AllowLoopbackForTests()}
	if mutate != nil {
		mutate(&cfg.OCI)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sameFiles(t *testing.T, want, got string) {
	t.Helper()
	entries, err := os.ReadDir(want)
	if err != nil {
		t.Fatal(err)
	}
	gotEntries, _ := os.ReadDir(got)
	if len(gotEntries) != len(entries) {
		t.Errorf("%d files, want %d", len(gotEntries), len(entries))
	}
	for _, e := range entries {
		a, _ := os.ReadFile(filepath.Join(want, e.Name()))
		b, err := os.ReadFile(filepath.Join(got, e.Name()))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs: %v", e.Name(), err)
		}
	}
}

func TestOCIListAllPages(t *testing.T) {
	var listCalls atomic.Int32
	host := fixtures.StartRegistry(t, func(h http.Handler) http.Handler {
		h = fixtures.PaginateTags(h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/tags/list") {
				listCalls.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	_, desc := pushFixture(t, host, fixtures.Options{})
	repo := plainRepo(t, host)
	want := []string{"openstack-scs-1-32-v1"}
	for i := 2; i <= 25; i++ {
		tag := "openstack-scs-1-32-v" + strconv.Itoa(i)
		if err := repo.Tag(context.Background(), desc, tag); err != nil {
			t.Fatal(err)
		}
		want = append(want, tag)
	}
	// Tags that are not release names are left out of the list.
	for _, tag := range []string{"latest", "sha256-0123.sig"} {
		if err := repo.Tag(context.Background(), desc, tag); err != nil {
			t.Fatal(err)
		}
	}
	want = inReleaseOrder(want)

	got, err := newOCI(t, host, func(c *OCIConfig) { c.TagPageSize = 4 }).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names(got), want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// 27 tags in pages of 4.
	if n := listCalls.Load(); n != 7 {
		t.Errorf("%d tag list requests, want 7 pages", n)
	}
}

func TestOCIFetch(t *testing.T) {
	host := fixtures.StartRegistry(t, nil)
	for _, opts := range []fixtures.Options{
		{StackVersion: "v2", NodeImages: true},
		{StackVersion: "v0-sha.abc1234", Convention: release.AddonConventionValues},
	} {
		t.Run(opts.ReleaseName(), func(t *testing.T) {
			dir, _ := pushFixture(t, host, opts)
			dest := t.TempDir()
			if err := newOCI(t, host, nil).Fetch(context.Background(), opts.Release(), dest); err != nil {
				t.Fatal(err)
			}
			sameFiles(t, dir, dest)
			if _, err := release.Load(dest, opts.Release(), release.Options{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// tamper flips one byte of every response for the blob with digest d,
// keeping its length, so only digest verification can notice.
func tamper(d *atomic.Value) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			target, _ := d.Load().(string)
			if r.Method != http.MethodGet || target == "" || !strings.HasSuffix(r.URL.Path, "/blobs/"+target) {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > 0 {
				body[len(body)/2] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		})
	}
}

func TestOCIFetchTamperedLayer(t *testing.T) {
	var target atomic.Value
	host := fixtures.StartRegistry(t, tamper(&target))
	opts := fixtures.Options{}
	dir, _ := pushFixture(t, host, opts)
	data, err := os.ReadFile(filepath.Join(dir, "openstack-scs-1-32-cluster-class-v1.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	target.Store(digest.FromBytes(data).String())

	err = newOCI(t, host, nil).Fetch(context.Background(), opts.Release(), t.TempDir())
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("got %v, want ErrIntegrity", err)
	}
	if !strings.Contains(err.Error(), "cluster-class") {
		t.Errorf("error %q does not name the file", err)
	}
}

// pushRaw pushes an artifact with the given artifact type and layers
// (title -> content) under tag.
func pushRaw(t *testing.T, host, artifactType, tag string, layers map[string]string) {
	t.Helper()
	ctx := context.Background()
	repo := plainRepo(t, host)
	var descs []ocispec.Descriptor
	for title, body := range layers {
		d := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromString(body), Size: int64(len(body))}
		if title != "" {
			d.Annotations = map[string]string{ocispec.AnnotationTitle: title}
		}
		if err := repo.Push(ctx, d, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
	}
	m, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, artifactType, oras.PackManifestOptions{Layers: descs})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag(ctx, m, tag); err != nil {
		t.Fatal(err)
	}
}

func TestOCIFetchRejects(t *testing.T) {
	host := fixtures.StartRegistry(t, nil)
	tests := []struct {
		name         string
		artifactType string
		layers       map[string]string
		wantErr      error
	}{
		{name: "other artifact type", artifactType: "application/vnd.example", layers: map[string]string{"metadata.yaml": "x"}, wantErr: ErrInvalidArtifact},
		{name: "path traversal in title", artifactType: ArtifactType, layers: map[string]string{"../evil": "x"}, wantErr: ErrInvalidArtifact},
		{name: "absolute title", artifactType: ArtifactType, layers: map[string]string{"/etc/evil": "x"}, wantErr: ErrInvalidArtifact},
		{name: "untitled layer", artifactType: ArtifactType, layers: map[string]string{"": "x"}, wantErr: ErrInvalidArtifact},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag := "openstack-scs-1-32-v" + strconv.Itoa(100+i)
			pushRaw(t, host, tt.artifactType, tag, tt.layers)
			parent := t.TempDir()
			dest := filepath.Join(parent, "dest")
			if err := os.Mkdir(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			err := newOCI(t, host, nil).Fetch(context.Background(), name.MustParse(tag), dest)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if list, _ := os.ReadDir(parent); len(list) != 1 {
				t.Errorf("written outside the destination: %v", list)
			}
		})
	}
}

func TestOCIFetchNotFound(t *testing.T) {
	host := fixtures.StartRegistry(t, nil)
	pushFixture(t, host, fixtures.Options{})
	err := newOCI(t, host, nil).Fetch(context.Background(), name.MustParse("openstack-scs-1-32-v9"), t.TempDir())
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if err := newOCI(t, host, nil).Fetch(context.Background(), unsafeName, t.TempDir()); err == nil {
		t.Fatal("a non-release name was accepted")
	}
}

// requireAuth answers 401 with challenge unless the Authorization header is want.
func requireAuth(want, challenge string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != want {
				w.Header().Set("WWW-Authenticate", challenge)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

func TestOCIAuth(t *testing.T) {
	const (
		basic = "Basic dXNlcjpzM2NyZXQ=" // user:s3cret
		token = "Bearer t0ken"
	)
	tests := []struct {
		name      string
		want      string
		challenge string
		creds     Credentials
		wantErr   error
	}{
		{name: "basic", want: basic, challenge: `Basic realm="test"`, creds: Credentials{Username: "user", Password: "s3cret"}},
		{name: "basic, wrong password", want: basic, challenge: `Basic realm="test"`, creds: Credentials{Username: "user", Password: "nope"}, wantErr: ErrUnauthorized},
		{name: "basic, anonymous", want: basic, challenge: `Basic realm="test"`, wantErr: ErrUnauthorized},
		// The realm is never contacted: a configured token is the registry token.
		{name: "token", want: token, challenge: `Bearer realm="https://192.0.2.1/token",service="test"`, creds: Credentials{Token: "t0ken"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Push without auth, then serve with it.
			var guard atomic.Bool
			host := fixtures.StartRegistry(t, func(h http.Handler) http.Handler {
				authed := requireAuth(tt.want, tt.challenge)(h)
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if guard.Load() {
						authed.ServeHTTP(w, r)
						return
					}
					h.ServeHTTP(w, r)
				})
			})
			opts := fixtures.Options{}
			pushFixture(t, host, opts)
			guard.Store(true)
			src := newOCI(t, host, func(c *OCIConfig) { c.Credentials = tt.creds })
			_, err := src.List(context.Background())
			if err == nil {
				err = src.Fetch(context.Background(), opts.Release(), t.TempDir())
			}
			if tt.wantErr == nil && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}
