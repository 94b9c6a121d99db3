// Package source lists and downloads cluster-stack releases from where they
// are published: an OCI registry (current SCS releases), GitHub releases
// (older SCS releases) or a local directory (air-gapped and development use).
// A Source only transfers files and checks their integrity in transit; the
// release package verifies what they mean and the cache package decides when
// to fetch.
package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// Type names a kind of source; it is the value of the metrics' source label.
type Type string

// The kinds of release sources.
const (
	// TypeOCI is an OCI registry repository: one artifact per release, tagged with its name.
	TypeOCI Type = "oci"
	// TypeGitHub is the GitHub releases of a repository: one GitHub release per release.
	TypeGitHub Type = "github"
	// TypeLocal is a directory with one sub-directory per release.
	TypeLocal Type = "local"
)

// Source is where releases come from.
type Source interface {
	// Type returns the kind of source.
	Type() Type
	// ID identifies the source (kind and location, never credentials), so
	// that a cache can tell two sources' releases of the same name apart.
	ID() string
	// List returns the available releases, ascending (name.Release.Compare). Entries that
	// are not release names (other tags, stray directories) are left out.
	List(ctx context.Context) ([]name.Release, error)
	// Fetch writes the files of release n into destDir, which must exist and be empty. On
	// error destDir may hold partial content; the caller throws it away.
	Fetch(ctx context.Context, n name.Release, destDir string) error
}

// Errors wrapped by the sources, for callers that classify failures.
var (
	// ErrNotFound: the release does not exist in the source.
	ErrNotFound = errors.New("release not found")
	// ErrIntegrity: downloaded content does not match its digest or size.
	ErrIntegrity = errors.New("content does not match its digest")
	// ErrInvalidArtifact: the published release is not in the release format
	// (wrong artifact type, unnamed or unsafe file names, duplicates).
	ErrInvalidArtifact = errors.New("not a cluster-stack release")
	// ErrTooLarge: the release is larger than the configured limit.
	ErrTooLarge = errors.New("release too large")
	// ErrUnauthorized: the source refused the credentials (or their absence).
	ErrUnauthorized = errors.New("unauthorized")
)

// DefaultMaxBytes bounds the total size of one release. Real releases are a
// few hundred kilobytes.
const DefaultMaxBytes int64 = 512 << 20

// releaseNames parses the entries that are release names (tags, asset or directory names are
// outside input and parsed here, once) and returns them ascending and unique.
func releaseNames(raw []string) []name.Release {
	out := make([]name.Release, 0, len(raw))
	for _, s := range raw {
		// Only the exact dashed spelling is a release: a name that parses but prints
		// differently (a leading zero) would be fetched under another tag.
		if n, err := name.Parse(s); err == nil && n.String() == s {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, name.Release.Compare)
	return slices.CompactFunc(out, func(a, b name.Release) bool { return a.Compare(b) == 0 })
}

// checkReleaseName refuses a hand-built name that does not print back to itself before it is
// used in a path, URL or tag, and returns its dashed form.
func checkReleaseName(n name.Release) (string, error) {
	if err := n.Validate(); err != nil {
		return "", fmt.Errorf("fetching release: %w", err)
	}
	return n.String(), nil
}

// checkFileName accepts the name of a file of a release: a plain base name.
// Published names (OCI title annotations, GitHub asset names) are outside
// input and become paths.
func checkFileName(file string) error {
	if file == "" || file == "." || file == ".." || strings.ContainsAny(file, `/\`+"\x00") || filepath.Base(file) != file {
		return fmt.Errorf("file name %q is not a plain file name: %w", file, ErrInvalidArtifact)
	}
	return nil
}

// budget tracks the bytes a release may still take.
type budget struct {
	left int64
}

func newBudget(maxBytes int64) *budget {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	return &budget{left: maxBytes}
}

// take reserves n announced bytes for file.
func (b *budget) take(file string, n int64) error {
	if n < 0 || n > b.left {
		return fmt.Errorf("file %q of %d bytes: %w", file, n, ErrTooLarge)
	}
	b.left -= n
	return nil
}

// writeFile creates destDir/file exclusively and copies at most size bytes
// of r into it; more or fewer bytes than announced is an integrity error.
func writeFile(destDir, file string, r io.Reader, size int64) error {
	f, err := os.OpenFile(filepath.Join(destDir, file), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("writing %q: duplicate file: %w", file, ErrInvalidArtifact)
		}
		return fmt.Errorf("writing %q: %w", file, err)
	}
	n, err := io.Copy(f, io.LimitReader(r, size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q: %w", file, err)
	}
	if n != size {
		return fmt.Errorf("writing %q: got %d bytes, want %d: %w", file, n, size, ErrIntegrity)
	}
	return nil
}
