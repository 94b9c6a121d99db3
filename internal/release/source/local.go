package source

import (
	"context"
	"errors"
	"fmt"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// FlagLocalSourceRoot is the manager flag that lists the directories local sources may use; it
// is named in refusals.
const FlagLocalSourceRoot = "--local-source-root"

// ErrLocalPathRefused is wrapped (with ErrInvalidConfig) when a local source's path is not a
// directory below one of the served roots. The message is the same whether the path exists or
// not: the author of a ClusterStack must not learn about the manager's file system from it.
var ErrLocalPathRefused = errors.New("not a directory below a directory the operator serves")

// Local reads releases from <dir>/<release name>/. Every read goes through an os.Root opened on
// a served root, so neither '..' nor a symlink can lead outside it.
type Local struct {
	dir      string // absolute path, for ID and messages
	root     string // the served root dir is below
	rel      string // dir relative to root
	maxBytes int64
}

// NewLocal returns a source for the release directories below dir, which must be a directory
// below one of roots (absolute paths the administrator serves, --local-source-root). With no
// roots local sources are refused.
func NewLocal(dir string, maxBytes int64, roots ...string) (*Local, error) {
	refused := fmt.Errorf("local source path %q: %w (set with %s): %w", dir, ErrLocalPathRefused, FlagLocalSourceRoot, ErrInvalidConfig)
	if !filepath.IsAbs(dir) {
		return nil, refused
	}
	dir = filepath.Clean(dir)
	for _, root := range roots {
		root = filepath.Clean(root)
		rel, err := filepath.Rel(root, dir)
		if err != nil || !filepath.IsLocal(rel) || !safeRoot(root) {
			continue
		}
		l := &Local{dir: dir, root: root, rel: filepath.ToSlash(rel), maxBytes: maxBytes}
		// Opened once here so that a path that is refused (missing, not a directory, a link
		// out of the root) gives the same error as one outside every root.
		r, err := l.open()
		if err != nil {
			return nil, refused
		}
		r.Close()
		return l, nil
	}
	return nil, refused
}

// safeRoot refuses roots that would serve the whole file system or the kernel's views of the
// manager process (its environment, its service-account token through /proc/self/root).
func safeRoot(root string) bool {
	if root == "/" || !filepath.IsAbs(root) {
		return false
	}
	for _, p := range []string{"/proc", "/sys", "/dev"} {
		if root == p || strings.HasPrefix(root, p+"/") {
			return false
		}
	}
	return true
}

// CheckLocalRoot validates a --local-source-root value at startup.
func CheckLocalRoot(root string) error {
	if !safeRoot(filepath.Clean(root)) {
		return fmt.Errorf("%s %q: must be an absolute directory other than /, /proc, /sys and /dev: %w", FlagLocalSourceRoot, root, ErrInvalidConfig)
	}
	return nil
}

// open returns an os.Root on the source directory; os.Root follows symlinks only while they
// stay inside the served root.
func (l *Local) open() (*os.Root, error) {
	root, err := os.OpenRoot(l.root)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if l.rel == "." {
		return os.OpenRoot(l.root)
	}
	return root.OpenRoot(l.rel)
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
func (l *Local) List(ctx context.Context) ([]name.Release, error) {
	root, err := l.open()
	if err != nil {
		return nil, fmt.Errorf("listing local releases of %q: %w (set with %s): %w", l.dir, ErrLocalPathRefused, FlagLocalSourceRoot, ErrInvalidConfig)
	}
	defer root.Close()
	entries, err := fs.ReadDir(root.FS(), ".")
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

// Fetch copies the regular files of the release directory. Symlinks are followed while they stay
// inside the served root (a developer may link files into place), sub-directories refused.
func (l *Local) Fetch(ctx context.Context, n name.Release, destDir string) error {
	releaseName, err := checkReleaseName(n)
	if err != nil {
		return err
	}
	root, err := l.open()
	if err != nil {
		return fmt.Errorf("fetching %q from %q: %w (set with %s): %w", releaseName, l.dir, ErrLocalPathRefused, FlagLocalSourceRoot, ErrInvalidConfig)
	}
	defer root.Close()
	entries, err := fs.ReadDir(root.FS(), releaseName)
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
		if err := copyFile(root, releaseName+"/"+e.Name(), destDir, e.Name(), b); err != nil {
			return fmt.Errorf("fetching %q: %w", releaseName, err)
		}
	}
	return nil
}

func copyFile(root *os.Root, src, destDir, file string, b *budget) error {
	f, err := root.Open(src)
	if err != nil {
		// Listed a moment ago, so typically a symlink out of the served root.
		return fmt.Errorf("%q cannot be opened inside the served directory (a link out of %s?): %w", file, FlagLocalSourceRoot, ErrInvalidArtifact)
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
