package chartdeps

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/atomicfile"
)

// store is the on-disk cache. Everything is written through a temporary file and a rename, so a
// reader (or a restarted process) sees a complete file or none.
//
//	blobs/sha256/<hex>   chart archives as fetched, named by the sha256 of their bytes
//	refs/<hex>.json      (repository, chart, exact version) -> archive digest
//	indexes/<hex>.yaml   index.yaml of a Helm repository as last fetched (mtime = fetch time)
//	vendored/<hex>.tgz   charts with their dependencies added, named by their inputs
//	tmp/                 writes in progress; emptied when the store is opened
type store struct {
	root string
}

func openStore(root string) (*store, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("opening the chart cache: %w", err)
	}
	s := &store{root: root}
	if err := os.RemoveAll(s.path("tmp")); err != nil {
		return nil, fmt.Errorf("opening the chart cache: clearing temporary files: %w", err)
	}
	for _, d := range []string{"blobs/sha256", "refs", "indexes", "vendored", "tmp"} {
		if err := os.MkdirAll(s.path(d), 0o755); err != nil {
			return nil, fmt.Errorf("opening the chart cache: %w", err)
		}
	}
	return s, nil
}

func (s *store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

// digestHex returns the hex part of a sha256 digest ("sha256:<hex>" or "<hex>"), lower case.
func digestHex(digest string) (string, bool) {
	h := strings.ToLower(strings.TrimPrefix(digest, "sha256:"))
	if len(h) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", false
	}
	return h, true
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// readBlob returns the archive with the digest, verified: a damaged file counts as missing (and
// is fetched again).
func (s *store) readBlob(digest string) ([]byte, bool) {
	h, ok := digestHex(digest)
	if !ok {
		return nil, false
	}
	data, err := os.ReadFile(s.path("blobs", "sha256", h))
	if err != nil || sha256Hex(data) != h {
		return nil, false
	}
	return data, true
}

// writeBlob stores an archive and returns its digest ("sha256:<hex>").
func (s *store) writeBlob(data []byte) (string, error) {
	h := sha256Hex(data)
	if err := s.writeFile(s.path("blobs", "sha256", h), data); err != nil {
		return "", fmt.Errorf("caching chart archive: %w", err)
	}
	return "sha256:" + h, nil
}

// refKey names one chart version of one repository.
type refKey struct {
	Repository string `json:"repository"`
	Name       string `json:"name"`
	Version    string `json:"version"`
}

type refEntry struct {
	refKey
	Digest string `json:"digest"`
}

func (k refKey) file() string {
	return sha256Hex([]byte(k.Repository+"\x00"+k.Name+"\x00"+k.Version)) + ".json"
}

// ref returns the digest recorded for a chart version. A chart version is treated as immutable
// once fetched, as Helm's own cache does; the archive itself is verified on every read.
func (s *store) ref(k refKey) (string, bool) {
	data, err := os.ReadFile(s.path("refs", k.file()))
	if err != nil {
		return "", false
	}
	var e refEntry
	if json.Unmarshal(data, &e) != nil || e.refKey != k {
		return "", false
	}
	return e.Digest, true
}

func (s *store) writeRef(k refKey, digest string) error {
	data, err := json.Marshal(refEntry{refKey: k, Digest: digest})
	if err != nil {
		return err
	}
	if err := s.writeFile(s.path("refs", k.file()), data); err != nil {
		return fmt.Errorf("caching chart reference: %w", err)
	}
	return nil
}

func (s *store) indexPath(repository string) string {
	return s.path("indexes", sha256Hex([]byte(repository))+".yaml")
}

func (s *store) vendoredPath(key string) string {
	return s.path("vendored", key+".tgz")
}

// writeFile writes data to dest through a synced temporary file and a rename.
func (s *store) writeFile(dest string, data []byte) error {
	return atomicfile.Write(s.path("tmp"), dest, data)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
