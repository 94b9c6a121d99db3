// Package chartdeps resolves the Chart.yaml dependencies of a Helm chart that are missing from its
// charts/ directory, the way `helm template --dependency-update` does: from Helm HTTP repositories
// (index.yaml, semver constraints as Helm reads them) and from OCI registries (`oci://`), pinned by
// Chart.lock when the lock matches Chart.yaml. The published SCS stacks (scs2) ship addon charts
// whose dependencies are declared but not vendored; without this step they render nothing.
//
// Everything fetched is untrusted: downloads are bounded in size and time, archives are checked
// with the release archive rules and loaded by Helm's loader before use, and every archive is
// verified against the digest its repository promises. What was fetched is cached on disk by
// content digest, shared by every release and kept across restarts: a chart version already
// fetched is never fetched again, and a chart whose dependencies are all pinned and cached
// resolves without any network access.
//
// The HTTP client comes from the caller: it carries the operator's outbound policy (which hosts
// may be reached) and its TLS settings; this package adds no policy of its own.
package chartdeps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	"golang.org/x/sync/singleflight"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/archive"
)

// Defaults of Options.
const (
	DefaultIndexTTL      = 10 * time.Minute
	DefaultMaxIndexBytes = 32 << 20
	DefaultMaxChartBytes = 16 << 20
	DefaultTimeout       = 2 * time.Minute
)

// DefaultArchiveLimits bound a dependency chart once decompressed. The largest charts in SCS
// stacks (cilium) are a few megabytes.
var DefaultArchiveLimits = archive.Limits{MaxBytes: 64 << 20, MaxFiles: 5000}

// Options configure a Resolver. Zero values mean the defaults.
type Options struct {
	// Dir is the cache directory; required. One Resolver per directory at a time: New clears its
	// temporary files.
	Dir string
	// HTTPClient makes every request (index.yaml, archives, OCI registries); required. It is
	// where the caller's outbound policy, proxies and CA bundle live.
	HTTPClient *http.Client
	// Credentials, when set, gives the credential of each repository; nil means anonymous.
	Credentials Credentials
	// IndexTTL is how long a fetched index.yaml (and so the resolution of a version range) is
	// reused before the repository is asked again. Pinned versions never expire.
	IndexTTL time.Duration
	// MaxIndexBytes bounds an index.yaml download.
	MaxIndexBytes int64
	// MaxChartBytes bounds a chart archive download (compressed).
	MaxChartBytes int64
	// ArchiveLimits bound a chart archive decompressed.
	ArchiveLimits archive.Limits
	// Timeout bounds each request.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Resolver resolves chart dependencies; it is safe for concurrent use.
type Resolver struct {
	opts  Options
	store *store
	group singleflight.Group

	mu   sync.Mutex
	memo map[string]memoEntry
}

type memoEntry struct {
	out string
	// expires is zero when every dependency was pinned: the result holds as long as the input.
	expires time.Time
}

// New opens the cache in opts.Dir.
func New(opts Options) (*Resolver, error) {
	if opts.Dir == "" || opts.HTTPClient == nil {
		return nil, errors.New("creating the chart dependency resolver: Dir and HTTPClient are required")
	}
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opts.MaxIndexBytes, DefaultMaxIndexBytes)
	def(&opts.MaxChartBytes, DefaultMaxChartBytes)
	if opts.IndexTTL <= 0 {
		opts.IndexTTL = DefaultIndexTTL
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.ArchiveLimits == (archive.Limits{}) {
		opts.ArchiveLimits = DefaultArchiveLimits
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s, err := openStore(opts.Dir)
	if err != nil {
		return nil, err
	}
	return &Resolver{opts: opts, store: s, memo: map[string]memoEntry{}}, nil
}

// Resolve returns the path of a chart equal to the chart at chartPath (a directory or a packaged
// .tgz) with every dependency that its Chart.yaml declares and its charts/ lacks added, fetched
// from the dependency's repository. A chart that lacks nothing is returned as chartPath itself.
// The result is a packaged chart in the cache; callers load it as they would load chartPath.
//
// Errors are *DependencyError (naming the chart, the dependency and the repository) or chart
// loading errors, and match ErrUnavailable (retry later) or ErrUnresolvable (the release or the
// repository must change).
func (r *Resolver) Resolve(ctx context.Context, chartPath string) (string, error) {
	sig := signature(chartPath)
	memoKey := chartPath + "\x00" + sig
	now := r.opts.Now()
	r.mu.Lock()
	m, ok := r.memo[memoKey]
	r.mu.Unlock()
	if ok && (m.expires.IsZero() || now.Before(m.expires)) && (m.out == chartPath || exists(m.out)) {
		return m.out, nil
	}

	ch, err := loader.Load(chartPath)
	if err != nil {
		return "", unresolvable(ErrInvalidChart, "loading chart %s: %v", filepath.Base(chartPath), err)
	}
	missing := missingDependencies(ch)
	if len(missing) == 0 {
		r.remember(memoKey, memoEntry{out: chartPath})
		return chartPath, nil
	}
	locked := lockedVersions(ch)
	var deps []fetched
	pinnedAll := true
	for _, d := range missing {
		version, pinned := d.Version, false
		if v, ok := locked[lockKey(d)]; ok {
			version, pinned = v, true
		}
		f, err := r.resolve(ctx, d, version)
		if err != nil {
			return "", &DependencyError{Parent: ch.Name(), Name: d.Name, Version: version, Repository: redact(d.Repository), Err: err}
		}
		if !pinned && !isExact(version) {
			pinnedAll = false
		}
		deps = append(deps, f)
	}

	out := r.store.vendoredPath(vendorKey(ch, deps))
	if !exists(out) {
		data, err := vendor(ch, deps)
		if err != nil {
			return "", fmt.Errorf("adding the dependencies of chart %s: %w", ch.Name(), err)
		}
		if err := r.store.writeFile(out, data); err != nil {
			return "", fmt.Errorf("caching chart %s with its dependencies: %w", ch.Name(), err)
		}
	}
	e := memoEntry{out: out}
	if !pinnedAll {
		e.expires = now.Add(r.opts.IndexTTL)
	}
	r.remember(memoKey, e)
	return out, nil
}

func (r *Resolver) remember(key string, e memoEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.memo[key] = e
}

// signature changes when the chart at p changes in a way that can change its dependencies: its
// Chart.yaml, Chart.lock and charts/ (or the archive itself). Callers pass content-addressed
// paths, so this only guards against surprises.
func signature(p string) string {
	var b strings.Builder
	for _, f := range []string{p, filepath.Join(p, "Chart.yaml"), filepath.Join(p, "Chart.lock"), filepath.Join(p, "charts")} {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			b.WriteString("-;")
		}
	}
	return b.String()
}

// missingDependencies are the Chart.yaml dependencies that no chart in charts/ provides, matched
// by chart name as Helm's CheckDependencies does.
func missingDependencies(ch *chart.Chart) []*chart.Dependency {
	var missing []*chart.Dependency
	for _, d := range ch.Metadata.Dependencies {
		if d == nil {
			continue
		}
		if !slices.ContainsFunc(ch.Dependencies(), func(sub *chart.Chart) bool { return sub.Name() == d.Name }) {
			missing = append(missing, d)
		}
	}
	return missing
}

func lockKey(d *chart.Dependency) string { return d.Name + "\x00" + normalizeURL(d.Repository) }

// lockedVersions returns the versions Chart.lock pins, or nil when there is no lock or it was
// generated for other Chart.yaml dependencies. A stale lock is ignored and the constraints of
// Chart.yaml are resolved, as `helm template --dependency-update` (what the SCS reference runs)
// does; refusing it would fail published stacks whose Chart.lock lags behind Chart.yaml.
func lockedVersions(ch *chart.Chart) map[string]string {
	if ch.Lock == nil {
		return nil
	}
	digest, err := hashReq(ch.Metadata.Dependencies, ch.Lock.Dependencies)
	if err != nil || digest != ch.Lock.Digest {
		return nil
	}
	out := map[string]string{}
	for _, d := range ch.Lock.Dependencies {
		if d != nil {
			out[lockKey(d)] = d.Version
		}
	}
	return out
}

// hashReq is the digest Helm writes into Chart.lock (internal/resolver.HashReq in the Helm
// module, not importable): the sha256 of the JSON of the Chart.yaml dependencies and the locked
// ones.
func hashReq(req, lock []*chart.Dependency) (string, error) {
	data, err := json.Marshal([2][]*chart.Dependency{req, lock})
	if err != nil {
		return "", err
	}
	return "sha256:" + sha256Hex(data), nil
}

// isExact tells a pinned version ("1.18.9") from a constraint ("^1.18", "1.18.x", ">=1"); only a
// pinned version can be served from the cache without asking the repository.
func isExact(v string) bool {
	_, err := semver.StrictNewVersion(strings.TrimPrefix(v, "v"))
	return err == nil
}

// fetched is one dependency archive, verified and loadable.
type fetched struct {
	name, version, digest string
	data                  []byte
}

// chartNameRE keeps a dependency name one path element: it names the archive in charts/ and the
// chart in an OCI reference.
var chartNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

func (r *Resolver) resolve(ctx context.Context, d *chart.Dependency, version string) (fetched, error) {
	if !chartNameRE.MatchString(d.Name) || strings.Contains(d.Name, "..") {
		return fetched{}, unresolvable(ErrInvalidChart, "%q is not a chart name", d.Name)
	}
	if _, err := semver.NewConstraint(version); err != nil && version != "" {
		return fetched{}, unresolvable(ErrInvalidChart, "version %q is neither a version nor a constraint: %v", version, err)
	}
	switch repo := d.Repository; {
	case strings.HasPrefix(repo, "oci://"):
		return r.fetchOCI(ctx, d.Name, repo, version)
	case strings.HasPrefix(repo, "https://"), strings.HasPrefix(repo, "http://"):
		return r.fetchHTTP(ctx, d.Name, repo, version)
	case repo == "":
		return fetched{}, unresolvable(ErrUnsupportedRepository, "the dependency is not in charts/ and names no repository")
	default:
		return fetched{}, unresolvable(ErrUnsupportedRepository, "only https://, http:// and oci:// repositories can be fetched; vendor the chart into charts/ instead")
	}
}

// cached returns the archive recorded for a chart version, if it is in the cache and intact.
func (r *Resolver) cached(k refKey) (fetched, bool) {
	digest, ok := r.store.ref(k)
	if !ok {
		return fetched{}, false
	}
	data, ok := r.store.readBlob(digest)
	if !ok {
		return fetched{}, false
	}
	return fetched{name: k.Name, version: k.Version, digest: digest, data: data}, true
}

// accept checks a downloaded archive and caches it under its digest and the chart version.
func (r *Resolver) accept(data []byte, keys ...refKey) (fetched, error) {
	k := keys[0]
	if err := r.checkArchive(data, k.Name, k.Version); err != nil {
		return fetched{}, err
	}
	digest, err := r.store.writeBlob(data)
	if err != nil {
		return fetched{}, err
	}
	for _, k := range keys {
		if err := r.store.writeRef(k, digest); err != nil {
			return fetched{}, err
		}
	}
	return fetched{name: k.Name, version: k.Version, digest: digest, data: data}, nil
}

// checkArchive applies the release archive rules (paths, links, sizes, file count), then loads
// the archive with Helm's loader and checks it is the chart that was asked for.
func (r *Resolver) checkArchive(data []byte, name, version string) error {
	if _, err := archive.Check(bytes.NewReader(data), r.opts.ArchiveLimits); err != nil {
		return unresolvable(ErrInvalidChart, "archive of %s %s: %v", name, version, err)
	}
	ch, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return unresolvable(ErrInvalidChart, "loading the archive of %s %s: %v", name, version, err)
	}
	if ch.Name() != name {
		return unresolvable(ErrInvalidChart, "the archive of %s %s holds chart %s", name, version, ch.Name())
	}
	return nil
}

// vendorKey names the vendored chart by everything it is made of: the chart's files and the
// digests of the added archives.
func vendorKey(ch *chart.Chart, deps []fetched) string {
	var b strings.Builder
	b.WriteString("chartdeps/v1\n")
	files := slices.Clone(ch.Raw)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	for _, f := range files {
		fmt.Fprintf(&b, "%s\x00%s\n", f.Name, sha256Hex(f.Data))
	}
	for _, d := range deps {
		fmt.Fprintf(&b, "dep %s\x00%s\x00%s\n", d.name, d.version, d.digest)
	}
	return sha256Hex([]byte(b.String()))
}

// vendor packages the chart's own files, unchanged, with the dependency archives under charts/,
// as `helm dependency build` leaves a chart directory.
func vendor(ch *chart.Chart, deps []fetched) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	// The top directory's name is dropped by every chart loader; a fixed one keeps odd chart
	// names out of paths.
	const top = "chart"
	added := map[string]bool{}
	for _, d := range deps {
		added[path.Join("charts", d.name+"-"+d.version+".tgz")] = true
	}
	files := slices.Clone(ch.Raw)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	for _, f := range files {
		if added[f.Name] {
			continue
		}
		if err := add(path.Join(top, f.Name), f.Data); err != nil {
			return nil, err
		}
	}
	for _, d := range deps {
		if err := add(path.Join(top, "charts", d.name+"-"+d.version+".tgz"), d.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
