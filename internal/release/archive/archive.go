// Package archive reads and extracts the tar.gz archives of cluster-stack
// releases (Helm charts and addon directories) without trusting them: entries
// with absolute paths, '..' components, symlinks and hard links, special
// files, and archives beyond size or file-count limits are refused.
//
// Links are refused as a whole rather than resolved: the published release
// format has no use for them (helm package and csctl write regular files), and
// a link that is harmless alone can escape together with another one
// (a -> d/up, d/up -> ../..), which no check of one target at a time sees.
package archive

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Errors wrapped by Check and Extract, for callers that classify failures.
var (
	// ErrUnsafePath: an entry name or link target escapes the destination.
	ErrUnsafePath = errors.New("unsafe path")
	// ErrLimitExceeded: the archive is larger or has more entries than allowed.
	ErrLimitExceeded = errors.New("archive limit exceeded")
	// ErrUnsupportedEntry: device files, FIFOs and the like.
	ErrUnsupportedEntry = errors.New("unsupported archive entry")
	// ErrMalformed: not a gzip-compressed tar stream.
	ErrMalformed = errors.New("malformed archive")
	// ErrLink: a symlink or hard link. It also matches ErrUnsafePath, so callers
	// that classify unsafe archives need no new case.
	ErrLink error = linkError{}
)

type linkError struct{}

func (linkError) Error() string {
	return "links are not allowed in release archives (package the file itself)"
}

func (linkError) Unwrap() error { return ErrUnsafePath }

// Limits bound what one archive may expand to.
type Limits struct {
	// MaxBytes is the total size of all regular files after decompression.
	MaxBytes int64
	// MaxFiles is the number of entries of any kind.
	MaxFiles int
}

// DefaultLimits are generous for Helm charts and addon directories (a few
// hundred kilobytes in practice) and small enough to stop an archive bomb.
var DefaultLimits = Limits{MaxBytes: 256 << 20, MaxFiles: 10000}

// Entry describes one accepted archive entry.
type Entry struct {
	// Name is the cleaned, slash-separated path relative to the archive root.
	Name string
	// Type is the tar type flag: tar.TypeReg or tar.TypeDir.
	Type byte
	// Size is the size of a regular file.
	Size int64
}

// Check reads a tar.gz stream and applies every rule Extract applies, without
// writing anything. It returns the accepted entries.
func Check(r io.Reader, limits Limits) ([]Entry, error) {
	return walk(r, limits, nil, nil)
}

// Extract writes a tar.gz stream into dest, which must exist. All writes go
// through an os.Root, so even a sequence of individually harmless links
// cannot make a later entry land outside dest.
func Extract(r io.Reader, dest string, limits Limits) ([]Entry, error) {
	root, err := os.OpenRoot(dest)
	if err != nil {
		return nil, fmt.Errorf("opening extraction directory: %w", err)
	}
	defer root.Close()
	return walk(r, limits, root, nil)
}

// CheckFile and ExtractFile are Check and Extract on a file.
func CheckFile(file string, limits Limits) ([]Entry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Check(f, limits)
}

// ExtractFile extracts the tar.gz file into dest.
func ExtractFile(file, dest string, limits Limits) ([]Entry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Extract(f, dest, limits)
}

// File is a regular file of an archive, read into memory by ReadFiles.
type File struct {
	// Name is the cleaned, slash-separated path relative to the archive root.
	Name string
	Data []byte
}

// ReadFiles applies every rule Check applies and returns the regular files
// with their content. It is how charts are loaded: from the file set that was
// verified, in one pass, never from a path on disk that could hold links.
func ReadFiles(r io.Reader, limits Limits) ([]File, error) {
	var files []File
	if _, err := walk(r, limits, nil, &files); err != nil {
		return nil, err
	}
	return files, nil
}

// ReadFilesFrom is ReadFiles on a file.
func ReadFilesFrom(file string, limits Limits) ([]File, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadFiles(f, limits)
}

// walk checks every entry; with root set it also writes the entry below root,
// with files set it collects the regular files in memory.
func walk(r io.Reader, limits Limits, root *os.Root, files *[]File) ([]Entry, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("reading gzip header: %v: %w", err, ErrMalformed)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	var (
		entries []Entry
		total   int64
		seen    = map[string]byte{}
	)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading tar entry: %v: %w", err, ErrMalformed)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if len(entries) >= limits.MaxFiles {
			return nil, fmt.Errorf("reading entry %q: more than %d entries: %w", hdr.Name, limits.MaxFiles, ErrLimitExceeded)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if name == "." {
			// "./" entries of tar -C dir . carry nothing.
			continue
		}
		if err := checkParents(name, seen); err != nil {
			return nil, err
		}
		e := Entry{Name: name, Type: hdr.Typeflag}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if t, ok := seen[name]; ok && t != tar.TypeDir {
				return nil, fmt.Errorf("reading entry %q: a directory replaces a file: %w", name, ErrUnsafePath)
			}
			if root != nil {
				if err := root.MkdirAll(name, 0o755); err != nil {
					return nil, fmt.Errorf("creating directory %q: %w", name, err)
				}
			}
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // TypeRegA still appears in old archives.
			e.Type = tar.TypeReg
			if _, ok := seen[name]; ok {
				return nil, fmt.Errorf("reading entry %q: duplicate entry: %w", name, ErrUnsafePath)
			}
			if hdr.Size < 0 || hdr.Size > limits.MaxBytes-total {
				return nil, fmt.Errorf("reading entry %q: archive expands beyond %d bytes: %w", name, limits.MaxBytes, ErrLimitExceeded)
			}
			e.Size = hdr.Size
			total += hdr.Size
			if files != nil {
				data, err := readFile(name, tr, hdr.Size)
				if err != nil {
					return nil, err
				}
				*files = append(*files, File{Name: name, Data: data})
			} else if err := writeFile(root, name, tr, hdr); err != nil {
				return nil, err
			}
		case tar.TypeSymlink:
			return nil, fmt.Errorf("reading entry %q: symlink to %q: %w", name, hdr.Linkname, ErrLink)
		case tar.TypeLink:
			return nil, fmt.Errorf("reading entry %q: hard link to %q: %w", name, hdr.Linkname, ErrLink)
		default:
			return nil, fmt.Errorf("reading entry %q: type %q: %w", name, hdr.Typeflag, ErrUnsupportedEntry)
		}
		seen[name] = e.Type
		entries = append(entries, e)
	}
	return entries, nil
}

// cleanName turns an entry name into a clean relative slash path, refusing
// absolute paths and any '..' component (even one that would cancel out: no
// legitimate chart needs it, and refusing is simpler to reason about).
func cleanName(raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("reading entry with an empty name: %w", ErrUnsafePath)
	}
	if strings.ContainsRune(raw, 0) || strings.Contains(raw, `\`) {
		return "", fmt.Errorf("reading entry %q: invalid characters in name: %w", raw, ErrUnsafePath)
	}
	if strings.HasPrefix(raw, "/") || (len(raw) > 1 && raw[1] == ':') {
		return "", fmt.Errorf("reading entry %q: absolute path: %w", raw, ErrUnsafePath)
	}
	for _, part := range strings.Split(raw, "/") {
		if part == ".." {
			return "", fmt.Errorf("reading entry %q: path contains '..': %w", raw, ErrUnsafePath)
		}
	}
	name := path.Clean(raw)
	if !fs.ValidPath(name) {
		return "", fmt.Errorf("reading entry %q: invalid path: %w", raw, ErrUnsafePath)
	}
	return name, nil
}

// checkParents refuses an entry below an earlier file: a directory cannot
// replace a file (links, the other way to write through a parent, are refused
// outright).
func checkParents(name string, seen map[string]byte) error {
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if t, ok := seen[dir]; ok && t != tar.TypeDir {
			return fmt.Errorf("reading entry %q: parent %q is not a directory: %w", name, dir, ErrUnsafePath)
		}
	}
	return nil
}

// readFile reads exactly size bytes (already counted against the limits).
func readFile(name string, r io.Reader, size int64) ([]byte, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("reading entry %q: %v: %w", name, err, ErrMalformed)
	}
	return data, nil
}

func writeFile(root *os.Root, name string, r io.Reader, hdr *tar.Header) error {
	if root == nil {
		// Check mode still reads the content, so the gzip stream is validated
		// and a lying header size cannot hide data.
		if _, err := io.CopyN(io.Discard, r, hdr.Size); err != nil {
			return fmt.Errorf("reading entry %q: %v: %w", name, err, ErrMalformed)
		}
		return nil
	}
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating directory for %q: %w", name, err)
		}
	}
	// Only the owner's permission bits of the archive are kept, plus read for
	// everyone: no setuid, no world-writable files.
	mode := fs.FileMode(hdr.Mode).Perm()&0o700 | 0o644
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("creating file %q: %w", name, err)
	}
	if _, err := io.CopyN(f, r, hdr.Size); err != nil {
		f.Close()
		return fmt.Errorf("writing file %q: %v: %w", name, err, ErrMalformed)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing file %q: %w", name, err)
	}
	return nil
}

// Create writes the regular files and directories below dir as a tar.gz
// stream, with names prefixed by prefix (e.g. a chart's name). It exists for
// building release archives in tests and tools; file modes are normalised and
// times zeroed so the output is reproducible.
func Create(w io.Writer, dir, prefix string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	fsys := os.DirFS(dir)
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := path.Join(prefix, p)
		if name == "." {
			return nil
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755})
		case d.Type().IsRegular():
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		default:
			return fmt.Errorf("archiving %q: only regular files and directories are supported", p)
		}
	})
	if err != nil {
		return fmt.Errorf("archiving %q: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}
