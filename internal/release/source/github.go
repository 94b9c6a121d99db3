package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// githubTimeout bounds one GitHub request, downloads included.
const githubTimeout = 5 * time.Minute

// DefaultGitHubAPIURL is the public GitHub API.
const DefaultGitHubAPIURL = "https://api.github.com"

// ErrRateLimited matches every *RateLimitError.
var ErrRateLimited = errors.New("rate limited")

// RateLimitError says that GitHub refused a request for rate limiting and
// when to try again. Callers requeue until RetryAt instead of hammering the
// API, which would only extend a secondary rate limit.
type RateLimitError struct {
	// StatusCode is 403 or 429.
	StatusCode int
	// RetryAt is when the limit resets.
	RetryAt time.Time
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limited by GitHub (HTTP %d): retry at %s", e.StatusCode, e.RetryAt.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// RetryAfter returns how long to wait from now, at least one second.
func (e *RateLimitError) RetryAfter(now time.Time) time.Duration {
	return max(e.RetryAt.Sub(now), time.Second)
}

// GitHub reads releases from the releases of a GitHub repository: one
// release per release name (its tag), every file an asset.
type GitHub struct {
	cfg      GitHubConfig
	client   *http.Client
	maxBytes int64
	now      func() time.Time
}

// NewGitHub returns a source for the releases of cfg's repository.
func NewGitHub(cfg GitHubConfig, httpClient *http.Client, maxBytes int64) (*GitHub, error) {
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultGitHubAPIURL
	}
	cfg.APIURL = strings.TrimSuffix(cfg.APIURL, "/")
	if _, err := url.Parse(cfg.APIURL); err != nil {
		return nil, fmt.Errorf("parsing GitHub API URL: %v: %w", err, ErrInvalidConfig)
	}
	if cfg.PerPage <= 0 || cfg.PerPage > 100 {
		cfg.PerPage = 100
	}
	if httpClient == nil {
		httpClient = egress.Default().Client(githubTimeout)
	}
	return &GitHub{cfg: cfg, client: httpClient, maxBytes: maxBytes, now: time.Now}, nil
}

// Type returns the kind of the source.
func (g *GitHub) Type() Type { return TypeGitHub }

// ID identifies the source (kind and location) in cache keys and messages.
func (g *GitHub) ID() string {
	return "github://" + strings.TrimPrefix(strings.TrimPrefix(g.cfg.APIURL, "https://"), "http://") + "/" + g.cfg.Owner + "/" + g.cfg.Repository
}

type ghRelease struct {
	TagName string    `json:"tag_name"`
	Draft   bool      `json:"draft"`
	Assets  []ghAsset `json:"assets"`
}

type ghAsset struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Size int64  `json:"size"`
	// URL is the API URL of the asset; with Accept: application/octet-stream
	// it redirects to the download.
	URL string `json:"url"`
	// Digest is "sha256:<hex>" on assets uploaded since GitHub started
	// recording it; older assets have none.
	Digest string `json:"digest"`
}

func (g *GitHub) repoURL() string {
	return g.cfg.APIURL + "/repos/" + url.PathEscape(g.cfg.Owner) + "/" + url.PathEscape(g.cfg.Repository)
}

// List reads all pages of the repository's releases, following the Link
// header, and returns the tags that are release names. Drafts are skipped:
// they have no tag yet.
func (g *GitHub) List(ctx context.Context) ([]name.Release, error) {
	next := g.repoURL() + "/releases?per_page=" + strconv.Itoa(g.cfg.PerPage)
	var tags []string
	// A bound on pages protects against a server whose Link header loops.
	for page := 0; next != "" && page < 1000; page++ {
		resp, err := g.get(ctx, next, "application/vnd.github+json")
		if err != nil {
			return nil, fmt.Errorf("listing releases of %s: %w", g.ID(), err)
		}
		var releases []ghRelease
		err = json.NewDecoder(io.LimitReader(resp.Body, 32<<20)).Decode(&releases)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("listing releases of %s: decoding page %d: %w", g.ID(), page+1, err)
		}
		for _, r := range releases {
			if !r.Draft {
				tags = append(tags, r.TagName)
			}
		}
		next = nextLink(resp.Header.Get("Link"))
		if next != "" && !g.sameOrigin(next) {
			return nil, fmt.Errorf("listing releases of %s: next page %q is on another host: %w", g.ID(), next, ErrInvalidArtifact)
		}
	}
	return releaseNames(tags), nil
}

// Fetch downloads every asset of the release tagged releaseName.
func (g *GitHub) Fetch(ctx context.Context, n name.Release, destDir string) error {
	releaseName, err := checkReleaseName(n)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("downloading %q from %s: %w", releaseName, g.ID(), err) }
	resp, err := g.get(ctx, g.repoURL()+"/releases/tags/"+url.PathEscape(releaseName), "application/vnd.github+json")
	if err != nil {
		return fail(err)
	}
	var rel ghRelease
	err = json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&rel)
	resp.Body.Close()
	if err != nil {
		return fail(fmt.Errorf("decoding release: %w", err))
	}
	if len(rel.Assets) == 0 {
		return fail(fmt.Errorf("release has no assets: %w", ErrInvalidArtifact))
	}
	b := newBudget(g.maxBytes)
	for _, a := range rel.Assets {
		if err := checkFileName(a.Name); err != nil {
			return fail(err)
		}
		// The token goes with the request, so it must stay with the API host;
		// the API's redirect to storage is followed without it.
		if !g.sameOrigin(a.URL) {
			return fail(fmt.Errorf("asset %q: URL %q is not on the API host: %w", a.Name, a.URL, ErrInvalidArtifact))
		}
		if err := b.take(a.Name, a.Size); err != nil {
			return fail(err)
		}
		if err := g.download(ctx, a, destDir); err != nil {
			return fail(err)
		}
	}
	return nil
}

func (g *GitHub) download(ctx context.Context, a ghAsset, destDir string) error {
	var (
		h    hash.Hash
		want string
	)
	if d, ok := strings.CutPrefix(a.Digest, "sha256:"); ok {
		h, want = sha256.New(), d
	}
	resp, err := g.get(ctx, a.URL, "application/octet-stream")
	if err != nil {
		return fmt.Errorf("downloading asset %q: %w", a.Name, err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if h != nil {
		r = io.TeeReader(r, h)
	}
	if err := writeFile(destDir, a.Name, r, a.Size); err != nil {
		return err
	}
	if h != nil {
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return fmt.Errorf("verifying asset %q: sha256 %s, want %s: %w", a.Name, got, want, ErrIntegrity)
		}
	}
	return nil
}

// get performs a GET with the API headers and turns error responses into
// errors. The HTTP client follows redirects (asset downloads redirect to a
// storage host) and drops the Authorization header when the host changes.
func (g *GitHub) get(ctx context.Context, u, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "clusterstack-operator")
	if g.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+g.cfg.Token)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, refusedIsConfig(err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if rl := g.rateLimit(resp); rl != nil {
		return nil, rl
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %s: %w", u, resp.Status, ErrNotFound)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("GET %s: %s: %w", u, resp.Status, ErrUnauthorized)
	}
	return nil, fmt.Errorf("GET %s: unexpected status %s", u, resp.Status)
}

// rateLimit recognises GitHub's primary (X-RateLimit-Remaining: 0 with
// X-RateLimit-Reset) and secondary (Retry-After) rate limits. A 429 without
// either header means "wait at least a minute" in GitHub's documentation.
func (g *GitHub) rateLimit(resp *http.Response) *RateLimitError {
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusTooManyRequests {
		return nil
	}
	now := g.now()
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
			return &RateLimitError{StatusCode: resp.StatusCode, RetryAt: now.Add(time.Duration(secs) * time.Second)}
		}
		if t, err := http.ParseTime(ra); err == nil {
			return &RateLimitError{StatusCode: resp.StatusCode, RetryAt: t}
		}
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" {
		retryAt := now.Add(time.Minute)
		if reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			retryAt = time.Unix(reset, 0)
		}
		return &RateLimitError{StatusCode: resp.StatusCode, RetryAt: retryAt}
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		return &RateLimitError{StatusCode: resp.StatusCode, RetryAt: now.Add(time.Minute)}
	}
	return nil
}

func (g *GitHub) sameOrigin(u string) bool {
	a, err1 := url.Parse(g.cfg.APIURL)
	b, err2 := url.Parse(u)
	return err1 == nil && err2 == nil && a.Scheme == b.Scheme && a.Host == b.Host
}

// nextLink returns the rel="next" URL of an RFC 8288 Link header.
func nextLink(header string) string {
	for _, part := range strings.Split(header, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if !ok {
			continue
		}
		target = strings.TrimSpace(target)
		if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.TrimSpace(k) == "rel" && strings.Trim(strings.TrimSpace(v), `"`) == "next" {
				return target[1 : len(target)-1]
			}
		}
	}
	return ""
}
