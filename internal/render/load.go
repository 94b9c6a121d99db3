package render

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/ignore"

	relarchive "github.com/seed-a720dd5e/clusterstack-operator/internal/release/archive"
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// loadChart loads a packaged chart (.tgz) or a chart directory from the file set this package
// verified itself, and hands Helm only that set (loader.LoadFiles). Helm's own loaders are not
// used: its directory loader follows symlinks, so a link in a release (or a chain of links that
// each look harmless) would let `.Files.Get` read any file the manager can read.
func loadChart(chartPath string) (*chart.Chart, error) {
	st, err := os.Stat(chartPath)
	if err != nil {
		return nil, err
	}
	// Helm's own bound on a loaded chart (100 MiB) stays the bound: the files are held in memory.
	limits := relarchive.DefaultLimits
	limits.MaxBytes = min(limits.MaxBytes, archive.MaxDecompressedChartSize)
	var files []*archive.BufferedFile
	if st.IsDir() {
		files, err = dirFiles(chartPath, limits)
	} else {
		files, err = archiveFiles(chartPath, limits)
	}
	if err != nil {
		return nil, err
	}
	return loader.LoadFiles(files)
}

// archiveFiles reads a packaged chart with the release archive rules (no links, no special
// files, size and count limits) and strips the chart's top directory, as Helm's archive loader
// does.
func archiveFiles(file string, limits relarchive.Limits) ([]*archive.BufferedFile, error) {
	list, err := relarchive.ReadFilesFrom(file, limits)
	if err != nil {
		return nil, err
	}
	var files []*archive.BufferedFile
	for _, f := range list {
		_, rest, ok := strings.Cut(f.Name, "/")
		if !ok {
			return nil, fmt.Errorf("reading chart file %q: not inside the chart's directory", f.Name)
		}
		files = append(files, &archive.BufferedFile{Name: rest, Data: bytes.TrimPrefix(f.Data, utf8BOM)})
	}
	if len(files) == 0 {
		return nil, errors.New("no files in chart archive")
	}
	return files, nil
}

// dirFiles reads a chart directory through an os.Root, so no path can leave it, and refuses
// symlinks (relarchive.ErrLink) and special files instead of following them. .helmignore is
// honoured as by `helm template <dir>`.
func dirFiles(dir string, limits relarchive.Limits) ([]*archive.BufferedFile, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	rules, err := helmIgnore(root)
	if err != nil {
		return nil, err
	}
	r := &dirReader{fsys: root.FS(), rules: rules, limits: limits}
	if err := fs.WalkDir(r.fsys, ".", r.visit); err != nil {
		return nil, err
	}
	return r.files, nil
}

// helmIgnore returns the chart's .helmignore rules with Helm's defaults added.
func helmIgnore(root *os.Root) (*ignore.Rules, error) {
	rules := ignore.Empty()
	switch data, err := root.ReadFile(ignore.HelmIgnore); {
	case err == nil:
		if rules, err = ignore.Parse(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("reading %s: %w", ignore.HelmIgnore, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("reading %s: %w", ignore.HelmIgnore, err)
	}
	rules.AddDefaults()
	return rules, nil
}

// dirReader collects the files of a chart directory within limits.
type dirReader struct {
	fsys   fs.FS
	rules  *ignore.Rules
	limits relarchive.Limits
	files  []*archive.BufferedFile
	total  int64
}

// visit is the fs.WalkDirFunc of dirFiles.
func (r *dirReader) visit(name string, d fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	if name == "." {
		return nil
	}
	if d.Type()&fs.ModeSymlink != 0 {
		return fmt.Errorf("reading chart file %q: symlink: %w", name, relarchive.ErrLink)
	}
	fi, err := d.Info()
	if err != nil {
		return err
	}
	if d.IsDir() {
		if r.rules.Ignore(name, fi) {
			return fs.SkipDir
		}
		return nil
	}
	if r.rules.Ignore(name, fi) {
		return nil
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("reading chart file %q: not a regular file: %w", name, relarchive.ErrUnsupportedEntry)
	}
	return r.read(name, fi)
}

// read adds the regular file name, unless it would take the chart over its limits.
func (r *dirReader) read(name string, fi fs.FileInfo) error {
	if len(r.files) >= r.limits.MaxFiles || fi.Size() > r.limits.MaxBytes-r.total {
		return fmt.Errorf("reading chart file %q: chart is larger than %d bytes or %d files: %w", name, r.limits.MaxBytes, r.limits.MaxFiles, relarchive.ErrLimitExceeded)
	}
	data, err := fs.ReadFile(r.fsys, name)
	if err != nil {
		return err
	}
	// The file may have grown since it was listed.
	if int64(len(data)) > r.limits.MaxBytes-r.total {
		return fmt.Errorf("reading chart file %q: chart is larger than %d bytes: %w", name, r.limits.MaxBytes, relarchive.ErrLimitExceeded)
	}
	r.total += int64(len(data))
	r.files = append(r.files, &archive.BufferedFile{Name: name, ModTime: fi.ModTime(), Data: bytes.TrimPrefix(data, utf8BOM)})
	return nil
}
