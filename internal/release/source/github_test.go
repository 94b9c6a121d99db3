package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

// fakeGitHub speaks the part of the GitHub releases API the source uses.
// Asset downloads answer with a redirect to a separate storage server, as
// GitHub does.
type fakeGitHub struct {
	api, storage *httptest.Server
	releases     []map[string]any // newest first, as GitHub lists them
	files        map[int64][]byte // asset id -> content
	token        string           // required when set
	limited      atomic.Value     // func(http.ResponseWriter) bool: answer a rate limit
	listCalls    atomic.Int32
	downloads    atomic.Int32
	nextID       int64
	// storageURL, when set, is where asset downloads redirect instead of storage.
	storageURL string
}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	f := &fakeGitHub{files: map[int64][]byte{}}
	f.storage = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/asset/"), 10, 64)
		data, ok := f.files[id]
		if !ok {
			http.NotFound(w, r)
			return
		}
		f.downloads.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(data)
	}))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /repos/{owner}/{repo}/releases", func(w http.ResponseWriter, r *http.Request) {
		f.listCalls.Add(1)
		per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if per <= 0 {
			per = 30
		}
		if page <= 0 {
			page = 1
		}
		start := min((page-1)*per, len(f.releases))
		end := min(start+per, len(f.releases))
		if end < len(f.releases) {
			w.Header().Set("Link", fmt.Sprintf(`<%s%s?per_page=%d&page=%d>; rel="next", <%s%s?per_page=%d&page=%d>; rel="last"`,
				f.api.URL, r.URL.Path, per, page+1, f.api.URL, r.URL.Path, per, (len(f.releases)+per-1)/per))
		}
		_ = json.NewEncoder(w).Encode(f.releases[start:end])
	})
	mux.HandleFunc("GET /repos/{owner}/{repo}/releases/tags/{tag}", func(w http.ResponseWriter, r *http.Request) {
		for _, rel := range f.releases {
			if rel["tag_name"] == r.PathValue("tag") {
				_ = json.NewEncoder(w).Encode(rel)
				return
			}
		}
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
	})
	mux.HandleFunc("GET /repos/{owner}/{repo}/releases/assets/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/octet-stream" {
			http.Error(w, "want Accept: application/octet-stream", http.StatusBadRequest)
			return
		}
		storage := f.storage.URL
		if f.storageURL != "" {
			storage = f.storageURL
		}
		http.Redirect(w, r, storage+"/asset/"+r.PathValue("id"), http.StatusFound)
	})
	f.api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fn, _ := f.limited.Load().(func(http.ResponseWriter) bool); fn != nil && fn(w) {
			return
		}
		if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.api.Close)
	t.Cleanup(f.storage.Close)
	return f
}

// addRelease publishes the files of dir as a release tagged tag. withDigest
// sets the asset digest field; corrupt stores different bytes than announced.
func (f *fakeGitHub) addRelease(t *testing.T, tag, dir string, withDigest bool, assetName func(string) string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var assets []map[string]any
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		f.nextID++
		f.files[f.nextID] = data
		n := e.Name()
		if assetName != nil {
			n = assetName(n)
		}
		a := map[string]any{
			"id":   f.nextID,
			"name": n,
			"size": len(data),
			"url":  fmt.Sprintf("%s/repos/o/r/releases/assets/%d", f.api.URL, f.nextID),
		}
		if withDigest {
			sum := sha256.Sum256(data)
			a["digest"] = "sha256:" + hex.EncodeToString(sum[:])
		}
		assets = append(assets, a)
	}
	f.releases = append([]map[string]any{{"tag_name": tag, "assets": assets}}, f.releases...)
}

func (f *fakeGitHub) source(t testing.TB, token string) *GitHub {
	g, err := NewGitHub(GitHubConfig{Owner: "o", Repository: "r", Token: token, APIURL: f.api.URL, PerPage: 3}, egress.AllowLoopbackForTests().Client(time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGitHubListAllPages(t *testing.T) {
	f := newFakeGitHub(t)
	var want []string
	for i := 1; i <= 8; i++ {
		tag := "openstack-scs-1-32-v" + strconv.Itoa(i)
		f.releases = append(f.releases, map[string]any{"tag_name": tag})
		want = append(want, tag)
	}
	f.releases = append(f.releases, map[string]any{"tag_name": "not-a-release"}, map[string]any{"tag_name": "openstack-scs-1-32-v99", "draft": true})
	want = inReleaseOrder(want)
	got, err := f.source(t, "").List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names(got), want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if n := f.listCalls.Load(); n != 4 { // 10 releases, 3 per page
		t.Errorf("%d list requests, want 4", n)
	}
}

func TestGitHubFetch(t *testing.T) {
	for _, tt := range []struct {
		name       string
		opts       fixtures.Options
		withDigest bool
		token      string
	}{
		{name: "config convention with digests", opts: fixtures.Options{NodeImages: true}, withDigest: true},
		{name: "values convention without digests, with token", opts: fixtures.Options{StackVersion: "v1-alpha.3", Convention: release.AddonConventionValues}, token: "s3cret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeGitHub(t)
			f.token = tt.token
			dir, err := fixtures.Build(t.TempDir(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			f.addRelease(t, tt.opts.ReleaseName(), dir, tt.withDigest, nil)
			dest := t.TempDir()
			if err := f.source(t, tt.token).Fetch(context.Background(), tt.opts.Release(), dest); err != nil {
				t.Fatal(err)
			}
			sameFiles(t, dir, dest)
			if n, files := int(f.downloads.Load()), len(f.files); n != files {
				t.Errorf("%d redirected downloads, want %d", n, files)
			}
			if _, err := release.Load(dest, tt.opts.Release(), release.Options{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGitHubFetchRejects(t *testing.T) {
	opts := fixtures.Options{}
	dir, err := fixtures.Build(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		setup   func(*fakeGitHub)
		release string
		token   string
		wantErr error
	}{
		{name: "unknown release", release: "openstack-scs-1-32-v7", wantErr: ErrNotFound},
		{name: "bad credentials", setup: func(f *fakeGitHub) { f.token = "right" }, token: "wrong", wantErr: ErrUnauthorized},
		{name: "traversal in asset name", setup: func(f *fakeGitHub) {
			f.releases = nil
			f.addRelease(t, opts.ReleaseName(), dir, false, func(n string) string { return "../" + n })
		}, wantErr: ErrInvalidArtifact},
		{name: "corrupted asset", setup: func(f *fakeGitHub) {
			for id, data := range f.files {
				if len(data) > 0 {
					c := slices.Clone(data)
					c[0] ^= 0xff
					f.files[id] = c
				}
			}
		}, wantErr: ErrIntegrity},
		{name: "asset URL on another host", setup: func(f *fakeGitHub) {
			f.releases[0]["assets"].([]map[string]any)[0]["url"] = f.storage.URL + "/asset/1"
		}, wantErr: ErrInvalidArtifact},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeGitHub(t)
			f.addRelease(t, opts.ReleaseName(), dir, true, nil)
			if tt.setup != nil {
				tt.setup(f)
			}
			rn := tt.release
			if rn == "" {
				rn = opts.ReleaseName()
			}
			parent := t.TempDir()
			dest := filepath.Join(parent, "dest")
			if err := os.Mkdir(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			err := f.source(t, tt.token).Fetch(context.Background(), name.MustParse(rn), dest)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if list, _ := os.ReadDir(parent); len(list) != 1 {
				t.Errorf("written outside the destination: %v", list)
			}
		})
	}
}

func TestGitHubRateLimit(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	reset := now.Add(17 * time.Minute)
	tests := []struct {
		name    string
		status  int
		headers map[string]string
		want    time.Time
	}{
		{name: "primary limit, 403", status: http.StatusForbidden, headers: map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(reset.Unix(), 10)}, want: reset},
		{name: "primary limit, 429", status: http.StatusTooManyRequests, headers: map[string]string{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": strconv.FormatInt(reset.Unix(), 10)}, want: reset},
		{name: "secondary limit, Retry-After seconds", status: http.StatusForbidden, headers: map[string]string{"Retry-After": "90"}, want: now.Add(90 * time.Second)},
		{name: "Retry-After date", status: http.StatusTooManyRequests, headers: map[string]string{"Retry-After": reset.Format(http.TimeFormat)}, want: reset},
		{name: "429 without headers", status: http.StatusTooManyRequests, want: now.Add(time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeGitHub(t)
			f.limited.Store(func(w http.ResponseWriter) bool {
				for k, v := range tt.headers {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				return true
			})
			g := f.source(t, "")
			g.now = func() time.Time { return now }
			for _, call := range []func() error{
				func() error { _, err := g.List(context.Background()); return err },
				func() error {
					return g.Fetch(context.Background(), name.MustParse("openstack-scs-1-32-v1"), t.TempDir())
				},
			} {
				err := call()
				var rl *RateLimitError
				if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) {
					t.Fatalf("got %v, want a *RateLimitError", err)
				}
				if !rl.RetryAt.Equal(tt.want) || rl.StatusCode != tt.status {
					t.Errorf("retry at %s (HTTP %d), want %s (HTTP %d)", rl.RetryAt, rl.StatusCode, tt.want, tt.status)
				}
				if d := rl.RetryAfter(now); d != max(tt.want.Sub(now), time.Second) {
					t.Errorf("RetryAfter %s", d)
				}
			}
		})
	}
	// A plain 403 without rate-limit headers is an authorization failure.
	f := newFakeGitHub(t)
	f.limited.Store(func(w http.ResponseWriter) bool { w.WriteHeader(http.StatusForbidden); return true })
	if _, err := f.source(t, "").List(context.Background()); !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrRateLimited) {
		t.Errorf("got %v, want ErrUnauthorized", err)
	}
}

func TestNextLink(t *testing.T) {
	tests := map[string]string{
		`<https://api.example/r?page=2>; rel="next", <https://api.example/r?page=5>; rel="last"`: "https://api.example/r?page=2",
		`<https://api.example/r?page=1>; rel="prev", <https://api.example/r?page=3>; rel=next`:   "https://api.example/r?page=3",
		`<https://api.example/r?page=1>; rel="first"`:                                            "",
		``:         "",
		`garbage`:  "",
		`<x>; rel`: "",
	}
	for in, want := range tests {
		if got := nextLink(in); got != want {
			t.Errorf("nextLink(%q) = %q, want %q", in, got, want)
		}
	}
}
