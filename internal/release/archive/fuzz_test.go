package archive

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract feeds arbitrary bytes (seeded with well-formed and hostile
// archives) and checks the safety properties: nothing appears next to the
// destination, no extracted path resolves outside it, the limits hold, and
// Check and ReadFiles agree with Extract.
func FuzzExtract(f *testing.F) {
	f.Add(tgz(f, entry{name: "chart/Chart.yaml", body: "name: x"}))
	f.Add(tgz(f, entry{name: "../x", body: "x"}))
	f.Add(tgz(f, entry{name: "l", link: "../../", typ: tar.TypeSymlink}, entry{name: "l/x", body: "x"}))
	f.Add(tgz(f, entry{name: "a", body: "x"}, entry{name: "b", link: "a", typ: tar.TypeLink}))
	f.Add([]byte("garbage"))
	limits := Limits{MaxBytes: 1 << 16, MaxFiles: 64}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dest := filepath.Join(parent, "dest")
		if err := os.Mkdir(dest, 0o755); err != nil {
			t.Fatal(err)
		}
		checked, checkErr := Check(bytes.NewReader(data), limits)
		entries, err := Extract(bytes.NewReader(data), dest, limits)
		files, readErr := ReadFiles(bytes.NewReader(data), limits)
		if (err == nil) != (checkErr == nil) || (err == nil) != (readErr == nil) {
			t.Fatalf("Extract: %v, Check: %v, ReadFiles: %v", err, checkErr, readErr)
		}
		if list, _ := os.ReadDir(parent); len(list) != 1 {
			t.Fatalf("written next to the destination: %v", list)
		}
		if err != nil {
			return
		}
		if len(entries) != len(checked) || len(entries) > limits.MaxFiles {
			t.Fatalf("%d entries extracted, %d checked", len(entries), len(checked))
		}
		var total int64
		realDest, _ := filepath.EvalSymlinks(dest)
		for _, e := range entries {
			total += e.Size
			p, err := filepath.EvalSymlinks(filepath.Join(dest, filepath.FromSlash(e.Name)))
			if err != nil {
				continue // a dangling link inside the tree is harmless
			}
			if p != realDest && !strings.HasPrefix(p, realDest+string(filepath.Separator)) {
				t.Fatalf("%q resolves outside the destination: %s", e.Name, p)
			}
		}
		for _, f := range files {
			if got, err := os.ReadFile(filepath.Join(dest, filepath.FromSlash(f.Name))); err != nil || !bytes.Equal(got, f.Data) {
				t.Fatalf("ReadFiles %q differs from the extracted file (%v)", f.Name, err)
			}
		}
		if total > limits.MaxBytes {
			t.Fatalf("extracted %d bytes", total)
		}
	})
}
