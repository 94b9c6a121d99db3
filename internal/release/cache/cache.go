// Package cache materialises verified cluster-stack releases on local disk.
// Entries are content-addressed (by release.DirDigest) and written
// atomically: a release is fetched into a temporary directory inside the
// cache root, verified, and only then renamed into place, so a crash never
// leaves a directory that looks complete. A small index maps (source, release
// name) to the content digest; it is written after the rename, which makes
// completed entries reusable across restarts without refetching.
//
// Layout below the root:
//
//	objects/<sha256 hex>/   verified release files
//	index/<sha256 hex>.json one per (source ID, release name)
//	tmp/                    fetches in progress; emptied on New and Prune
//
// One Cache per root directory and process: New clears tmp/. Prune removes what its caller no
// longer needs and bounds the total size, least recently used first; loaded releases are kept
// in memory, bounded too, so that serving a release does not re-verify it from disk.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/lru"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/atomicfile"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// Fetcher is what the cache needs of a release source (source.Source
// satisfies it). A fetcher with a Volatile() bool method returning true is
// fetched on every Get (content addressing still deduplicates).
type Fetcher interface {
	ID() string
	Fetch(ctx context.Context, n name.Release, destDir string) error
}

// Key identifies a cached release by where it came from.
type Key struct {
	// Source is the Fetcher's ID.
	Source string
	// Release is the release.
	Release name.Release
}

// Options tune a Cache.
type Options struct {
	// Verify tunes the verification of every entry (release.Load).
	Verify release.Options
	// MaxBytes bounds the size of the verified releases on disk, enforced by Prune; zero means
	// no bound.
	MaxBytes int64
}

// maxLoaded bounds the releases kept loaded in memory. Evicting one only costs re-verifying it
// from disk on its next use.
const maxLoaded = 256

// Cache is safe for concurrent use.
type Cache struct {
	root string
	opts Options

	// mu is held for reading while an entry is looked up or materialised and
	// for writing by Prune, so Prune never removes what a Get is returning.
	mu    sync.RWMutex
	group singleflight.Group

	// loaded holds verified releases by index file name; entries are content-addressed and
	// never change under their name, so they need no re-verification while Prune keeps them.
	loaded *lru.Cache
	// usedMu guards used: when each index entry was last served, the order of Prune's eviction.
	usedMu sync.Mutex
	used   map[string]time.Time
}

// New opens (creating if needed) the cache at root. Leftovers of fetches
// interrupted by a crash are removed.
func New(root string, opts Options) (*Cache, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("opening release cache: %w", err)
	}
	c := &Cache{root: root, opts: opts, loaded: lru.New(maxLoaded), used: map[string]time.Time{}}
	if err := os.RemoveAll(c.tmpDir()); err != nil {
		return nil, fmt.Errorf("opening release cache: clearing temporary files: %w", err)
	}
	for _, d := range []string{c.objectsDir(), c.indexDir(), c.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("opening release cache: %w", err)
		}
	}
	return c, nil
}

// Root returns the cache directory.
func (c *Cache) Root() string { return c.root }

func (c *Cache) objectsDir() string { return filepath.Join(c.root, "objects") }
func (c *Cache) indexDir() string   { return filepath.Join(c.root, "index") }
func (c *Cache) tmpDir() string     { return filepath.Join(c.root, "tmp") }

type indexEntry struct {
	Source  string `json:"source"`
	Release string `json:"release"`
	Digest  string `json:"digest"`
}

func (k Key) file() string {
	h := sha256.Sum256([]byte(k.Source + "\x00" + k.Release.String()))
	return hex.EncodeToString(h[:]) + ".json"
}

func objectName(digest string) (string, error) {
	hexPart, ok := strings.CutPrefix(digest, "sha256:")
	if _, err := hex.DecodeString(hexPart); !ok || err != nil || len(hexPart) != 64 {
		return "", fmt.Errorf("invalid digest %q", digest)
	}
	return hexPart, nil
}

// Get returns the verified release n of src, fetching it unless a completed entry exists.
// Concurrent calls for the same key share one fetch.
func (c *Cache) Get(ctx context.Context, src Fetcher, n name.Release) (*release.Release, error) {
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("getting release: %w", err)
	}
	key := Key{Source: src.ID(), Release: n}
	c.mu.RLock()
	defer c.mu.RUnlock()

	volatile := false
	if v, ok := src.(interface{ Volatile() bool }); ok {
		volatile = v.Volatile()
	}
	if !volatile {
		if r, ok := c.lookup(key); ok {
			cp := *r
			return &cp, nil
		}
	}
	v, err, _ := c.group.Do(key.file(), func() (any, error) {
		// A caller that waited for another's fetch of the same key finds
		// the entry here.
		if !volatile {
			if r, ok := c.lookup(key); ok {
				return r, nil
			}
		}
		return c.materialise(ctx, src, key)
	})
	if err != nil {
		return nil, err
	}
	// Each caller gets its own copy: Release is a plain struct callers may keep.
	r := *v.(*release.Release)
	return &r, nil
}

// Lookup returns the cached release for key without fetching.
func (c *Cache) Lookup(key Key) (*release.Release, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.lookup(key)
	if !ok {
		return nil, false
	}
	cp := *r
	return &cp, true
}

// lookup serves key from memory, or else verifies its entry on disk and keeps it loaded.
func (c *Cache) lookup(key Key) (*release.Release, bool) {
	if v, ok := c.loaded.Get(key.file()); ok {
		c.touch(key)
		return v.(*release.Release), true
	}
	r, ok := c.load(key)
	if ok {
		c.loaded.Add(key.file(), r)
		c.touch(key)
	}
	return r, ok
}

func (c *Cache) touch(key Key) {
	c.usedMu.Lock()
	c.used[key.file()] = time.Now()
	c.usedMu.Unlock()
}

func (c *Cache) load(key Key) (*release.Release, bool) {
	data, err := os.ReadFile(filepath.Join(c.indexDir(), key.file()))
	if err != nil {
		return nil, false
	}
	var e indexEntry
	if err := json.Unmarshal(data, &e); err != nil || e.Source != key.Source || e.Release != key.Release.String() {
		return nil, false
	}
	obj, err := objectName(e.Digest)
	if err != nil {
		return nil, false
	}
	// Loading re-verifies the entry (cheap: no network, small files), so a
	// damaged entry is refetched rather than used.
	r, err := release.Load(filepath.Join(c.objectsDir(), obj), key.Release, c.opts.Verify)
	if err != nil {
		return nil, false
	}
	r.Digest = e.Digest
	return r, true
}

func (c *Cache) materialise(ctx context.Context, src Fetcher, key Key) (*release.Release, error) {
	tmp, err := os.MkdirTemp(c.tmpDir(), "fetch-")
	if err != nil {
		return nil, fmt.Errorf("materialising %q: %w", key.Release, err)
	}
	defer os.RemoveAll(tmp)
	staging := filepath.Join(tmp, "release")
	if err := os.Mkdir(staging, 0o755); err != nil {
		return nil, err
	}
	if err := src.Fetch(ctx, key.Release, staging); err != nil {
		return nil, err
	}
	if _, err := release.Load(staging, key.Release, c.opts.Verify); err != nil {
		return nil, err
	}
	digest, err := release.DirDigest(staging)
	if err != nil {
		return nil, fmt.Errorf("materialising %q: %w", key.Release, err)
	}
	obj, _ := objectName(digest)
	final := filepath.Join(c.objectsDir(), obj)
	if err := syncDir(staging); err != nil {
		return nil, fmt.Errorf("materialising %q: %w", key.Release, err)
	}
	r, err := release.Load(final, key.Release, c.opts.Verify)
	switch err {
	case nil:
		// The same content is already cached (from another source or name,
		// or a volatile refetch): reuse it.
	default:
		// A damaged or foreign directory under the final name is replaced.
		if rerr := os.RemoveAll(final); rerr != nil {
			return nil, fmt.Errorf("materialising %q: removing damaged entry: %w", key.Release, rerr)
		}
		if err := os.Rename(staging, final); err != nil {
			return nil, fmt.Errorf("materialising %q: %w", key.Release, err)
		}
		if err := syncPath(c.objectsDir()); err != nil {
			return nil, fmt.Errorf("materialising %q: %w", key.Release, err)
		}
		if r, err = release.Load(final, key.Release, c.opts.Verify); err != nil {
			return nil, err
		}
	}
	r.Digest = digest
	if err := c.writeIndex(key, digest); err != nil {
		return nil, fmt.Errorf("materialising %q: %w", key.Release, err)
	}
	c.loaded.Add(key.file(), r)
	c.touch(key)
	return r, nil
}

// writeIndex writes the index entry through a temporary file and a rename,
// so readers see the old entry or the new one, never a torn one.
func (c *Cache) writeIndex(key Key, digest string) error {
	data, err := json.Marshal(indexEntry{Source: key.Source, Release: key.Release.String(), Digest: digest})
	if err != nil {
		return err
	}
	if err := atomicfile.Write(c.tmpDir(), filepath.Join(c.indexDir(), key.file()), data); err != nil {
		return err
	}
	return syncPath(c.indexDir())
}

// Prune removes the index entries for which keep is false, then, while the verified releases
// take more than Options.MaxBytes, the kept entries least recently served; then the objects no
// entry references any more, and leftovers of interrupted fetches. An entry evicted for size is
// fetched again when it is next asked for. It returns the number of objects removed.
func (c *Cache) Prune(keep func(Key) bool) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entries, err := os.ReadDir(c.indexDir())
	if err != nil {
		return 0, fmt.Errorf("pruning release cache: %w", err)
	}
	var errs []error
	var kept []prunable
	for _, e := range entries {
		p, ok := c.readEntry(e)
		if !ok || !keep(p.key) {
			// An unreadable entry references nothing; it is rewritten on the next fetch.
			errs = append(errs, c.dropEntry(e.Name()))
			continue
		}
		kept = append(kept, p)
	}
	refs, evictErrs := c.evictToSize(kept)
	errs = append(errs, evictErrs...)
	removed, removeErrs := c.removeUnreferenced(refs)
	errs = append(errs, removeErrs...)
	tmp, _ := os.ReadDir(c.tmpDir())
	for _, t := range tmp {
		errs = append(errs, os.RemoveAll(filepath.Join(c.tmpDir(), t.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("pruning release cache: %w", err)
	}
	return removed, nil
}

// dropEntry forgets the index entry file, on disk and in memory.
func (c *Cache) dropEntry(file string) error {
	c.loaded.Remove(file)
	c.usedMu.Lock()
	delete(c.used, file)
	c.usedMu.Unlock()
	if err := os.Remove(filepath.Join(c.indexDir(), file)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// evictToSize drops the least recently served of the kept entries while the objects they
// reference take more than Options.MaxBytes. It returns how many remaining entries reference
// each object.
func (c *Cache) evictToSize(kept []prunable) (map[string]int, []error) {
	sizes := map[string]int64{} // object -> bytes
	refs := map[string]int{}    // object -> kept entries referencing it
	var total int64
	for _, p := range kept {
		if _, ok := sizes[p.object]; !ok {
			sizes[p.object] = dirBytes(filepath.Join(c.objectsDir(), p.object))
			total += sizes[p.object]
		}
		refs[p.object]++
	}
	if c.opts.MaxBytes <= 0 || total <= c.opts.MaxBytes {
		return refs, nil
	}
	c.usedMu.Lock()
	for i := range kept {
		if t, ok := c.used[kept[i].file]; ok && t.After(kept[i].used) {
			kept[i].used = t
		}
	}
	c.usedMu.Unlock()
	slices.SortFunc(kept, func(a, b prunable) int { return a.used.Compare(b.used) })
	var errs []error
	for _, p := range kept {
		if total <= c.opts.MaxBytes {
			break
		}
		errs = append(errs, c.dropEntry(p.file))
		if refs[p.object]--; refs[p.object] == 0 {
			total -= sizes[p.object]
		}
	}
	return refs, errs
}

// removeUnreferenced removes the objects that no entry references, and returns how many.
func (c *Cache) removeUnreferenced(refs map[string]int) (int, []error) {
	objects, err := os.ReadDir(c.objectsDir())
	if err != nil {
		return 0, []error{err}
	}
	removed := 0
	var errs []error
	for _, o := range objects {
		if refs[o.Name()] > 0 {
			continue
		}
		if err := os.RemoveAll(filepath.Join(c.objectsDir(), o.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errs
}

// prunable is one index entry as Prune sees it.
type prunable struct {
	file   string
	key    Key
	object string
	// used is when the entry was last served, or else written.
	used time.Time
}

func (c *Cache) readEntry(e fs.DirEntry) (prunable, bool) {
	data, err := os.ReadFile(filepath.Join(c.indexDir(), e.Name()))
	if err != nil {
		return prunable{}, false
	}
	var ie indexEntry
	if err := json.Unmarshal(data, &ie); err != nil {
		return prunable{}, false
	}
	n, err := name.Parse(ie.Release)
	if err != nil {
		return prunable{}, false
	}
	obj, err := objectName(ie.Digest)
	if err != nil {
		return prunable{}, false
	}
	p := prunable{file: e.Name(), key: Key{Source: ie.Source, Release: n}, object: obj}
	if info, err := e.Info(); err == nil {
		p.used = info.ModTime()
	}
	return p, true
}

// dirBytes is the size of the regular files of a flat directory.
func dirBytes(dir string) int64 {
	entries, _ := os.ReadDir(dir)
	var n int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
	}
	return n
}

// syncDir flushes the files of a flat directory and the directory itself,
// so that the rename that publishes it cannot reach the disk before its content.
func syncDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := syncPath(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return syncPath(dir)
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
