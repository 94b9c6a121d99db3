package chartdeps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	repo "helm.sh/helm/v4/pkg/repo/v1"
)

// fetchHTTP resolves a dependency from a Helm HTTP repository.
func (r *Resolver) fetchHTTP(ctx context.Context, name, repository, version string) (fetched, error) {
	repository = normalizeURL(repository)
	if isExact(version) {
		if f, ok := r.cached(refKey{Repository: repository, Name: name, Version: version}); ok {
			return f, nil
		}
	}
	idx, err := r.index(ctx, repository)
	if err != nil {
		return fetched{}, err
	}
	cv, err := idx.Get(name, version)
	switch {
	case errors.Is(err, repo.ErrNoChartName):
		return fetched{}, unresolvable(ErrChartNotFound, "the repository index has no chart %s", name)
	case err != nil:
		return fetched{}, unresolvable(ErrNoMatchingVersion, "the repository index has no version of %s matching %q", name, version)
	case len(cv.URLs) == 0:
		return fetched{}, unresolvable(ErrChartNotFound, "the repository index lists no URL for %s %s", name, cv.Version)
	}
	keys := []refKey{{Repository: repository, Name: name, Version: cv.Version}}
	if version != cv.Version && isExact(version) {
		keys = append(keys, refKey{Repository: repository, Name: name, Version: version})
	}
	want := ""
	if cv.Digest != "" {
		h, ok := digestHex(cv.Digest)
		if !ok {
			return fetched{}, unresolvable(ErrInvalidIndex, "the repository index gives %s %s the malformed digest %q", name, cv.Version, cv.Digest)
		}
		want = h
	}
	if f, ok := r.cached(keys[0]); ok && (want == "" || f.digest == "sha256:"+want) {
		return f, nil
	}
	// The same archive may be cached from another repository (a mirror) or name.
	if want != "" {
		if data, ok := r.store.readBlob(want); ok {
			if err := r.checkArchive(data, name, cv.Version); err == nil {
				return r.accept(data, keys...)
			}
		}
	}

	chartURL, err := repo.ResolveReferenceURL(repository, cv.URLs[0])
	if err != nil {
		return fetched{}, unresolvable(ErrInvalidIndex, "the URL of %s %s: %v", name, cv.Version, err)
	}
	v, err, _ := r.group.Do("chart\x00"+chartURL, func() (any, error) {
		return r.get(ctx, repository, chartURL, r.opts.MaxChartBytes)
	})
	if err != nil {
		return fetched{}, err
	}
	data := v.([]byte)
	if want != "" && sha256Hex(data) != want {
		return fetched{}, unresolvable(ErrDigestMismatch, "the archive of %s %s from %s has digest sha256:%s, the repository index says sha256:%s",
			name, cv.Version, redact(chartURL), sha256Hex(data), want)
	}
	return r.accept(data, keys...)
}

// index returns the repository's index.yaml: the cached copy while it is younger than IndexTTL,
// else a fresh one. When the repository cannot be reached, an older copy still answers.
func (r *Resolver) index(ctx context.Context, repository string) (*repo.IndexFile, error) {
	p := r.store.indexPath(repository)
	fi, statErr := os.Stat(p)
	if statErr == nil && r.opts.Now().Sub(fi.ModTime()) < r.opts.IndexTTL {
		if idx, err := repo.LoadIndexFile(p); err == nil {
			return idx, nil
		}
	}
	v, err, _ := r.group.Do("index\x00"+repository, func() (any, error) {
		data, err := r.get(ctx, repository, repository+"/index.yaml", r.opts.MaxIndexBytes)
		if err != nil {
			return nil, err
		}
		// Helm's index reader works on files; the candidate is parsed before it replaces the
		// cached copy, so a broken index never overwrites a good one.
		tmp, err := os.CreateTemp(r.store.path("tmp"), "index-")
		if err != nil {
			return nil, err
		}
		defer os.Remove(tmp.Name())
		_, werr := tmp.Write(data)
		if cerr := tmp.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, werr
		}
		idx, err := repo.LoadIndexFile(tmp.Name())
		if err != nil {
			return nil, unresolvable(ErrInvalidIndex, "index.yaml of %s: %v", redact(repository), err)
		}
		if err := r.store.writeFile(p, data); err != nil {
			return nil, fmt.Errorf("caching index.yaml: %w", err)
		}
		return idx, nil
	})
	if err != nil {
		if statErr == nil && errors.Is(err, ErrUnavailable) {
			if idx, lerr := repo.LoadIndexFile(p); lerr == nil {
				return idx, nil
			}
		}
		return nil, err
	}
	return v.(*repo.IndexFile), nil
}

// get downloads target, at most limit bytes. The repository's credential is sent only to the
// repository's own host, as Helm does unless told to pass credentials to all hosts.
func (r *Resolver) get(ctx context.Context, repository, target string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, unresolvable(ErrUnsupportedRepository, "URL %s: %v", redact(target), err)
	}
	if sameHost(repository, target) {
		cred, err := r.credential(ctx, repository)
		if err != nil {
			return nil, err
		}
		switch {
		case cred.Token != "":
			req.Header.Set("Authorization", "Bearer "+cred.Token)
		case cred.Username != "" || cred.Password != "":
			req.SetBasicAuth(cred.Username, cred.Password)
		}
	}
	resp, err := r.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, unavailable(fmt.Errorf("fetching %s: %w", redact(target), err))
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return nil, unresolvable(ErrUnauthorized, "fetching %s: HTTP %d (check the repository's credentials)", redact(target), code)
	case code == http.StatusNotFound || code == http.StatusGone:
		return nil, unresolvable(ErrChartNotFound, "fetching %s: HTTP %d", redact(target), code)
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		return nil, unavailable(fmt.Errorf("fetching %s: HTTP %d", redact(target), code))
	default:
		return nil, unresolvable(ErrChartNotFound, "fetching %s: HTTP %d", redact(target), code)
	}
	if resp.ContentLength > limit {
		return nil, unresolvable(ErrTooLarge, "fetching %s: %d bytes, the limit is %d", redact(target), resp.ContentLength, limit)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, unavailable(fmt.Errorf("reading %s: %w", redact(target), err))
	}
	if int64(len(data)) > limit {
		return nil, unresolvable(ErrTooLarge, "fetching %s: more than the limit of %d bytes", redact(target), limit)
	}
	return data, nil
}

func (r *Resolver) credential(ctx context.Context, repository string) (Credential, error) {
	if r.opts.Credentials == nil {
		return Credential{}, nil
	}
	return r.opts.Credentials.For(ctx, repository)
}

func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Scheme == ub.Scheme && strings.EqualFold(ua.Host, ub.Host)
}

// redact drops user information and the query (which may hold a token) from a URL for messages.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User = nil
	p.RawQuery = ""
	return p.String()
}
