package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/archive"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/cache"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

// countingFetcher counts fetches and can fail or block them.
type countingFetcher struct {
	cache.Fetcher
	fetches atomic.Int32
	gate    chan struct{} // when set, Fetch waits for it
	mutate  func(dir string)
}

// Volatile passes on the wrapped source's marker.
func (c *countingFetcher) Volatile() bool {
	v, ok := c.Fetcher.(interface{ Volatile() bool })
	return ok && v.Volatile()
}

func (c *countingFetcher) Fetch(ctx context.Context, name, dir string) error {
	c.fetches.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	if err := c.Fetcher.Fetch(ctx, name, dir); err != nil {
		return err
	}
	if c.mutate != nil {
		c.mutate(dir)
	}
	return nil
}

// sources returns one source of each type serving the releases built from opts.
func sources(t *testing.T, opts ...fixtures.Options) map[string]source.Source {
	t.Helper()
	local := t.TempDir()
	host := fixtures.StartRegistry(t, nil)
	gh := newGitHub(t)
	for _, o := range opts {
		dir, err := fixtures.Build(local, o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fixtures.Push(context.Background(), dir, host+"/kaas/cluster-stacks", o.ReleaseName(), true); err != nil {
			t.Fatal(err)
		}
		gh.add(t, o.ReleaseName(), dir)
	}
	out := map[string]source.Source{}
	for typ, cfg := range map[string]source.Config{
		"local":  {Type: source.TypeLocal, Local: source.LocalConfig{Path: local}},
		"oci":    {Type: source.TypeOCI, OCI: source.OCIConfig{Registry: host, Repository: "kaas/cluster-stacks", PlainHTTP: true}},
		"github": {Type: source.TypeGitHub, GitHub: source.GitHubConfig{Owner: "o", Repository: "r", APIURL: gh.srv.URL}},
	} {
		// The doubles listen on loopback, which the default egress policy refuses.
		cfg.Egress, cfg.LocalRoots = egress.AllowLoopbackForTests(), []string{local}
		s, err := source.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		out[typ] = s
	}
	return out
}

func TestRoundTripAllSources(t *testing.T) {
	opts := []fixtures.Options{
		{StackVersion: "v1"},
		{StackVersion: "v2", Convention: release.AddonConventionValues, NodeImages: true},
		{StackVersion: "v0-sha.abc1234"},
	}
	for typ, src := range sources(t, opts...) {
		t.Run(typ, func(t *testing.T) {
			ctx := context.Background()
			names, err := src.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"openstack-scs-1-32-v0-sha-abc1234", "openstack-scs-1-32-v1", "openstack-scs-1-32-v2"}
			if !slices.Equal(names, want) {
				t.Fatalf("List: %v, want %v", names, want)
			}
			root := t.TempDir()
			c, err := cache.New(root, release.Options{})
			if err != nil {
				t.Fatal(err)
			}
			counting := &countingFetcher{Fetcher: src}
			for _, o := range opts {
				r, err := c.Get(ctx, counting, o.ReleaseName())
				if err != nil {
					t.Fatal(err)
				}
				if r.Name.String() != o.ReleaseName() || !strings.HasPrefix(r.Dir, filepath.Join(root, "objects")) || r.Digest == "" {
					t.Errorf("got %+v", r)
				}
				wantConv := release.AddonConventionConfig
				if o.Convention != "" {
					wantConv = o.Convention
				}
				if r.AddonConvention != wantConv {
					t.Errorf("convention %q, want %q", r.AddonConvention, wantConv)
				}
				// The addon archive of the verified release extracts safely.
				if _, err := archive.ExtractFile(r.ClusterAddonArchive, t.TempDir(), archive.DefaultLimits); err != nil {
					t.Error(err)
				}
			}
			fetched := counting.fetches.Load()
			if fetched != int32(len(opts)) {
				t.Errorf("%d fetches, want %d", fetched, len(opts))
			}

			// A new Cache on the same root (a restart) reuses completed
			// entries, except for volatile (local) sources.
			c2, err := cache.New(root, release.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range opts {
				if _, err := c2.Get(ctx, counting, o.ReleaseName()); err != nil {
					t.Fatal(err)
				}
				if _, ok := c2.Lookup(cache.Key{Source: src.ID(), Release: o.ReleaseName()}); !ok {
					t.Errorf("Lookup misses %s", o.ReleaseName())
				}
			}
			refetched := counting.fetches.Load() - fetched
			wantRefetch := int32(0)
			if typ == "local" {
				wantRefetch = int32(len(opts))
			}
			if refetched != wantRefetch {
				t.Errorf("%d fetches after restart, want %d", refetched, wantRefetch)
			}
			if objs, _ := os.ReadDir(filepath.Join(root, "objects")); len(objs) != len(opts) {
				t.Errorf("%d objects, want %d", len(objs), len(opts))
			}
		})
	}
}

// TestRejectsLeaveNothing: a release that fails verification is rejected
// whole: no object, no index entry, no temporary files, nothing outside the root.
func TestRejectsLeaveNothing(t *testing.T) {
	opts := fixtures.Options{}
	tests := []struct {
		name    string
		mutate  func(dir string)
		wantErr error
	}{
		{name: "missing file", mutate: func(dir string) { _ = os.Remove(filepath.Join(dir, "metadata.yaml")) }, wantErr: release.ErrMissingFile},
		{name: "missing chart", mutate: func(dir string) { _ = os.Remove(filepath.Join(dir, "openstack-scs-1-32-cluster-class-v1.tgz")) }, wantErr: release.ErrMissingFile},
		{name: "inconsistent metadata", mutate: func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, "metadata.yaml"), []byte("versions:\n  clusterStack: v2\n  kubernetes: v1.32.1\n  components:\n    clusterAddon: v1\n"), 0o644)
		}, wantErr: release.ErrInconsistent},
		{name: "broken metadata", mutate: func(dir string) { _ = os.WriteFile(filepath.Join(dir, "metadata.yaml"), []byte("{"), 0o644) }, wantErr: release.ErrMalformedMetadata},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srcs := sources(t, opts)
			for typ, src := range srcs {
				parent := t.TempDir()
				root := filepath.Join(parent, "cache")
				c, err := cache.New(root, release.Options{})
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Get(context.Background(), &countingFetcher{Fetcher: src, mutate: tt.mutate}, opts.ReleaseName())
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, release.ErrInvalid) {
					t.Fatalf("%s: got %v, want %v", typ, err, tt.wantErr)
				}
				for _, d := range []string{"objects", "index", "tmp"} {
					if list, _ := os.ReadDir(filepath.Join(root, d)); len(list) != 0 {
						t.Errorf("%s: %s holds %v", typ, d, list)
					}
				}
				if list, _ := os.ReadDir(parent); len(list) != 1 {
					t.Errorf("%s: written next to the cache: %v", typ, list)
				}
			}
		})
	}
}

func TestRejectsArchiveBomb(t *testing.T) {
	opts := fixtures.Options{}
	src := sources(t, opts)["oci"]
	root := t.TempDir()
	c, err := cache.New(root, release.Options{Limits: archive.Limits{MaxBytes: 64, MaxFiles: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), src, opts.ReleaseName()); !errors.Is(err, archive.ErrLimitExceeded) {
		t.Fatalf("got %v, want ErrLimitExceeded", err)
	}
	if list, _ := os.ReadDir(filepath.Join(root, "objects")); len(list) != 0 {
		t.Errorf("objects: %v", list)
	}
}

func TestConcurrentGetsFetchOnce(t *testing.T) {
	opts := fixtures.Options{}
	src := &countingFetcher{Fetcher: sources(t, opts)["oci"], gate: make(chan struct{})}
	c, err := cache.New(t.TempDir(), release.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const callers = 8
	var (
		wg      sync.WaitGroup
		started sync.WaitGroup
		errs    = make(chan error, callers)
		dirs    = make(chan string, callers)
	)
	started.Add(callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			r, err := c.Get(context.Background(), src, opts.ReleaseName())
			if err != nil {
				errs <- err
				return
			}
			dirs <- r.Dir
		}()
	}
	started.Wait()
	// Callers that arrive after the fetch completes find the entry; those
	// that arrive during it share it. Either way there is one fetch.
	close(src.gate)
	wg.Wait()
	close(errs)
	close(dirs)
	for err := range errs {
		t.Error(err)
	}
	var first string
	for d := range dirs {
		if first == "" {
			first = d
		} else if d != first {
			t.Errorf("different directories %s and %s", first, d)
		}
	}
	if n := src.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

func TestCrashLeftoversAndDamagedEntries(t *testing.T) {
	opts := fixtures.Options{}
	src := &countingFetcher{Fetcher: sources(t, opts)["oci"]}
	root := t.TempDir()
	c, err := cache.New(root, release.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(context.Background(), src, opts.ReleaseName())
	if err != nil {
		t.Fatal(err)
	}
	// A crash mid-fetch leaves files in tmp/; a restart removes them.
	if err := os.MkdirAll(filepath.Join(root, "tmp", "fetch-123", "release"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Damage the entry: it must be refetched, not used.
	if err := os.Remove(r.ClusterClassChart); err != nil {
		t.Fatal(err)
	}
	c2, err := cache.New(root, release.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := os.ReadDir(filepath.Join(root, "tmp")); len(list) != 0 {
		t.Errorf("tmp holds %v after restart", list)
	}
	r2, err := c2.Get(context.Background(), src, opts.ReleaseName())
	if err != nil {
		t.Fatal(err)
	}
	if n := src.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2 (the damaged entry refetched)", n)
	}
	if r2.Digest != r.Digest {
		t.Errorf("digest %s, want %s", r2.Digest, r.Digest)
	}
	if _, err := os.Stat(r2.ClusterClassChart); err != nil {
		t.Error(err)
	}
}

func TestPrune(t *testing.T) {
	opts := []fixtures.Options{{StackVersion: "v1"}, {StackVersion: "v2"}, {StackVersion: "v3"}}
	src := sources(t, opts...)["oci"]
	root := t.TempDir()
	c, err := cache.New(root, release.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	for _, o := range opts {
		r, err := c.Get(context.Background(), src, o.ReleaseName())
		if err != nil {
			t.Fatal(err)
		}
		dirs[o.ReleaseName()] = r.Dir
	}
	keep := []cache.Key{{Source: src.ID(), Release: "openstack-scs-1-32-v2"}}
	removed, err := c.Prune(keep)
	if err != nil {
		t.Fatal(err)
	}
	if removed != 2 {
		t.Errorf("removed %d, want 2", removed)
	}
	for n, d := range dirs {
		_, err := os.Stat(d)
		if kept := n == "openstack-scs-1-32-v2"; kept != (err == nil) {
			t.Errorf("%s: kept=%v, stat: %v", n, kept, err)
		}
		_, ok := c.Lookup(cache.Key{Source: src.ID(), Release: n})
		if ok != (n == "openstack-scs-1-32-v2") {
			t.Errorf("%s: Lookup %v", n, ok)
		}
	}
	if removed, err := c.Prune(nil); err != nil || removed != 1 {
		t.Errorf("Prune(nil): %d, %v", removed, err)
	}
}

func TestGetRejectsBadName(t *testing.T) {
	c, err := cache.New(t.TempDir(), release.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := sources(t)["local"]
	for _, n := range []string{"", "../../x", "openstack-scs-1-32-v1/../../x"} {
		if _, err := c.Get(context.Background(), src, n); err == nil {
			t.Errorf("Get(%q) succeeded", n)
		}
	}
}
