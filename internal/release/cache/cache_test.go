package cache_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
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

func (c *countingFetcher) Fetch(ctx context.Context, n name.Release, dir string) error {
	c.fetches.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	if err := c.Fetcher.Fetch(ctx, n, dir); err != nil {
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
			want := []name.Release{name.MustParse("openstack-scs-1-32-v0-sha-abc1234"), name.MustParse("openstack-scs-1-32-v1"), name.MustParse("openstack-scs-1-32-v2")}
			if !slices.Equal(names, want) {
				t.Fatalf("List: %v, want %v", names, want)
			}
			root := t.TempDir()
			c, err := cache.New(root, cache.Options{})
			if err != nil {
				t.Fatal(err)
			}
			counting := &countingFetcher{Fetcher: src}
			for _, o := range opts {
				r, err := c.Get(ctx, counting, o.Release())
				if err != nil {
					t.Fatal(err)
				}
				if r.Name != o.Release() || !strings.HasPrefix(r.Dir, filepath.Join(root, "objects")) || r.Digest == "" {
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
			c2, err := cache.New(root, cache.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range opts {
				if _, err := c2.Get(ctx, counting, o.Release()); err != nil {
					t.Fatal(err)
				}
				if _, ok := c2.Lookup(cache.Key{Source: src.ID(), Release: o.Release()}); !ok {
					t.Errorf("Lookup misses %s", o.Release())
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
				c, err := cache.New(root, cache.Options{})
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Get(context.Background(), &countingFetcher{Fetcher: src, mutate: tt.mutate}, opts.Release())
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
	c, err := cache.New(root, cache.Options{Verify: release.Options{Limits: archive.Limits{MaxBytes: 64, MaxFiles: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), src, opts.Release()); !errors.Is(err, archive.ErrLimitExceeded) {
		t.Fatalf("got %v, want ErrLimitExceeded", err)
	}
	if list, _ := os.ReadDir(filepath.Join(root, "objects")); len(list) != 0 {
		t.Errorf("objects: %v", list)
	}
}

func TestConcurrentGetsFetchOnce(t *testing.T) {
	opts := fixtures.Options{}
	src := &countingFetcher{Fetcher: sources(t, opts)["oci"], gate: make(chan struct{})}
	c, err := cache.New(t.TempDir(), cache.Options{})
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
			r, err := c.Get(context.Background(), src, opts.Release())
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
	c, err := cache.New(root, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(context.Background(), src, opts.Release())
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
	c2, err := cache.New(root, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := os.ReadDir(filepath.Join(root, "tmp")); len(list) != 0 {
		t.Errorf("tmp holds %v after restart", list)
	}
	r2, err := c2.Get(context.Background(), src, opts.Release())
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
	c, err := cache.New(root, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	for _, o := range opts {
		r, err := c.Get(context.Background(), src, o.Release())
		if err != nil {
			t.Fatal(err)
		}
		dirs[o.ReleaseName()] = r.Dir
	}
	v2 := cache.Key{Source: src.ID(), Release: name.MustParse("openstack-scs-1-32-v2")}
	removed, err := c.Prune(func(k cache.Key) bool { return k == v2 })
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
		_, ok := c.Lookup(cache.Key{Source: src.ID(), Release: name.MustParse(n)})
		if ok != (n == "openstack-scs-1-32-v2") {
			t.Errorf("%s: Lookup %v", n, ok)
		}
	}
	if removed, err := c.Prune(func(cache.Key) bool { return false }); err != nil || removed != 1 {
		t.Errorf("Prune keeping nothing: %d, %v", removed, err)
	}
}

func TestGetRejectsBadName(t *testing.T) {
	c, err := cache.New(t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := sources(t)["local"]
	// Hand-built names that would not print back to themselves: the zero value, a path, and a
	// release name with a path behind it.
	k := name.KubernetesMinor{Major: 1, Minor: 32}
	for _, n := range []name.Release{
		{},
		{Provider: "..", Stack: "..", Kubernetes: k, Version: name.Stable(1)},
		{Provider: "openstack", Stack: "scs", Kubernetes: k, Version: name.Version{Major: 1, Kind: name.KindPreRelease, PreRelease: "x/../../y", Patch: 1}},
	} {
		if _, err := c.Get(context.Background(), src, n); !errors.Is(err, name.ErrInvalidName) && !errors.Is(err, name.ErrInvalidVersion) {
			t.Errorf("Get(%+v): got %v, want an invalid name", n, err)
		}
	}
}

// TestPruneBoundsCycledReleases cycles through many releases, as a long-running operator with
// autoSubscribe does, and checks that pruning keeps the cache's files on disk within its bound
// while the releases still named stay served.
func TestPruneBoundsCycledReleases(t *testing.T) {
	const releases = 50
	local := t.TempDir()
	var one int64
	for i := 1; i <= releases; i++ {
		dir, err := fixtures.Build(local, fixtures.Options{StackVersion: fmt.Sprintf("v%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if one == 0 {
			one = diskBytes(t, dir)
		}
	}
	src, err := source.New(source.Config{Type: source.TypeLocal, Local: source.LocalConfig{Path: local}, LocalRoots: []string{local}})
	if err != nil {
		t.Fatal(err)
	}
	key := func(i int) cache.Key {
		return cache.Key{Source: src.ID(), Release: name.MustParse(fmt.Sprintf("openstack-scs-1-32-v%d", i))}
	}
	tests := []struct {
		name string
		// named is which releases a ClusterStackRelease still names at step i.
		named func(k cache.Key, i int) bool
		// maxReleases is the bound, in releases' worth of bytes.
		maxReleases int64
		// wantKept are the releases still cached at the end.
		wantKept []int
		// wantObjects is how many releases are on disk at the end.
		wantObjects int
		// pinned is a release that must stay cached at every step (0: none).
		pinned int
	}{
		{
			name: "unnamed releases go, named ones stay",
			// v1 is pinned by a Cluster; the newest two are desired by autoSubscribe.
			named: func(k cache.Key, i int) bool {
				return k == key(1) || k == key(i) || (i > 1 && k == key(i-1))
			},
			maxReleases: 10, wantKept: []int{1, releases - 1, releases}, wantObjects: 3, pinned: 1,
		},
		{
			name:        "the size bound evicts the least recently used named releases",
			named:       func(cache.Key, int) bool { return true },
			maxReleases: 5, wantKept: []int{releases - 4, releases - 3, releases - 2, releases - 1, releases}, wantObjects: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxBytes := tt.maxReleases*one + one/2
			root := t.TempDir()
			c, err := cache.New(root, cache.Options{MaxBytes: maxBytes})
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= releases; i++ {
				if _, err := c.Get(context.Background(), src, key(i).Release); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Prune(func(k cache.Key) bool { return tt.named(k, i) }); err != nil {
					t.Fatal(err)
				}
				if tt.pinned != 0 {
					if _, ok := c.Lookup(key(tt.pinned)); !ok {
						t.Fatalf("step %d: v%d was pruned although named", i, tt.pinned)
					}
				}
				if got := diskBytes(t, filepath.Join(root, "objects")); got > maxBytes {
					t.Fatalf("step %d: %d bytes on disk, bound %d", i, got, maxBytes)
				}
			}
			objects, err := os.ReadDir(filepath.Join(root, "objects"))
			if err != nil {
				t.Fatal(err)
			}
			if len(objects) != tt.wantObjects {
				t.Errorf("%d releases on disk, want %d", len(objects), tt.wantObjects)
			}
			for _, i := range tt.wantKept {
				r, ok := c.Lookup(key(i))
				if !ok {
					t.Errorf("v%d is not cached", i)
					continue
				}
				if _, err := os.Stat(r.ClusterClassChart); err != nil {
					t.Errorf("v%d: %v", i, err)
				}
			}
			if _, ok := c.Lookup(key(2)); ok {
				t.Error("v2 is still cached")
			}
			// What was evicted is fetched again on demand.
			if _, err := c.Get(context.Background(), src, key(2).Release); err != nil {
				t.Errorf("fetching an evicted release again: %v", err)
			}
		})
	}
}

// diskBytes is the size of the regular files below dir.
func diskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
