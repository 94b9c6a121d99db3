package source

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Local reads releases from <dir>/<release name>/.
type Local struct {
	dir      string
	maxBytes int64
}

// NewLocal returns a source for the release directories below dir.
func NewLocal(dir string, maxBytes int64) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving local release directory: %w", err)
	}
	return &Local{dir: abs, maxBytes: maxBytes}, nil
}

// Type returns the kind of the source.
func (l *Local) Type() Type { return TypeLocal }

// ID identifies the source (kind and location) in cache keys and messages.
func (l *Local) ID() string { return "local://" + filepath.ToSlash(l.dir) }

// Volatile tells the cache to copy a local release again on every use:
// during development a release directory is rebuilt under the same name, and
// copying local files costs little. Identical content still maps to the same
// cache entry.
func (l *Local) Volatile() bool { return true }

// List returns the names of the release directories.
func (l *Local) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, fmt.Errorf("listing local releases: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return releaseNames(names), nil
}

// Fetch copies the regular files of the release directory. Symlinks are
// followed (a developer may link files into place), sub-directories refused.
func (l *Local) Fetch(ctx context.Context, releaseName, destDir string) error {
	if err := checkReleaseName(releaseName); err != nil {
		return err
	}
	src := filepath.Join(l.dir, releaseName)
	entries, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fetching %q from %s: %w", releaseName, l.dir, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("fetching %q: %w", releaseName, err)
	}
	b := newBudget(l.maxBytes)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyFile(filepath.Join(src, e.Name()), destDir, e.Name(), b); err != nil {
			return fmt.Errorf("fetching %q: %w", releaseName, err)
		}
	}
	return nil
}

func copyFile(src, destDir, file string, b *budget) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%q is not a regular file: %w", file, ErrInvalidArtifact)
	}
	if err := b.take(file, st.Size()); err != nil {
		return err
	}
	return writeFile(destDir, file, f, st.Size())
}
