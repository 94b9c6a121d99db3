package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, link, body string
	typ              byte
	size             int64 // overrides len(body) in the header when > 0
}

func tgz(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(e.body))
		if typ != tar.TypeReg {
			size = 0
		}
		if e.size > 0 {
			size = e.size
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Size: size, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil && e.size == 0 {
				t.Fatal(err)
			}
		}
	}
	// A short write above leaves the writer in an error state; the archive is
	// then deliberately truncated, which is what the test wants.
	_ = tw.Close()
	_ = gz.Close()
	return buf.Bytes()
}

func TestExtract(t *testing.T) {
	small := Limits{MaxBytes: 100, MaxFiles: 4}
	tests := []struct {
		name    string
		entries []entry
		limits  Limits
		wantErr error
		want    map[string]string // files expected after extraction
	}{
		{
			name:    "chart",
			entries: []entry{{name: "chart/", typ: tar.TypeDir}, {name: "chart/Chart.yaml", body: "name: x"}, {name: "chart/templates/cm.yaml", body: "kind: ConfigMap"}},
			want:    map[string]string{"chart/Chart.yaml": "name: x", "chart/templates/cm.yaml": "kind: ConfigMap"},
		},
		{
			name:    "symlink and hard link inside",
			entries: []entry{{name: "a/b.txt", body: "hi"}, {name: "a/c.txt", link: "b.txt", typ: tar.TypeSymlink}, {name: "d.txt", link: "a/b.txt", typ: tar.TypeLink}},
			want:    map[string]string{"a/b.txt": "hi", "a/c.txt": "hi", "d.txt": "hi"},
		},
		{name: "dot-dot", entries: []entry{{name: "../evil", body: "x"}}, wantErr: ErrUnsafePath},
		{name: "dot-dot that cancels out", entries: []entry{{name: "a/../b", body: "x"}}, wantErr: ErrUnsafePath},
		{name: "absolute", entries: []entry{{name: "/etc/evil", body: "x"}}, wantErr: ErrUnsafePath},
		{name: "symlink out", entries: []entry{{name: "a/link", link: "../../etc", typ: tar.TypeSymlink}}, wantErr: ErrUnsafePath},
		{name: "absolute symlink", entries: []entry{{name: "link", link: "/etc/passwd", typ: tar.TypeSymlink}}, wantErr: ErrUnsafePath},
		{name: "hard link out", entries: []entry{{name: "link", link: "../x", typ: tar.TypeLink}}, wantErr: ErrUnsafePath},
		{name: "hard link to absent file", entries: []entry{{name: "link", link: "nothing", typ: tar.TypeLink}}, wantErr: ErrUnsafePath},
		{
			name:    "write through an inside symlink",
			entries: []entry{{name: "d/", typ: tar.TypeDir}, {name: "l", link: "d", typ: tar.TypeSymlink}, {name: "l/x", body: "x"}},
			wantErr: ErrUnsafePath,
		},
		{name: "duplicate file", entries: []entry{{name: "a", body: "1"}, {name: "a", body: "2"}}, wantErr: ErrUnsafePath},
		{name: "too large", limits: small, entries: []entry{{name: "a", body: strings.Repeat("x", 101)}}, wantErr: ErrLimitExceeded},
		{name: "too large in sum", limits: small, entries: []entry{{name: "a", body: strings.Repeat("x", 60)}, {name: "b", body: strings.Repeat("x", 60)}}, wantErr: ErrLimitExceeded},
		{name: "too many files", limits: small, entries: []entry{{name: "a"}, {name: "b"}, {name: "c"}, {name: "d"}, {name: "e"}}, wantErr: ErrLimitExceeded},
		{name: "fifo", entries: []entry{{name: "p", typ: tar.TypeFifo}}, wantErr: ErrUnsupportedEntry},
		{name: "device", entries: []entry{{name: "dev", typ: tar.TypeChar}}, wantErr: ErrUnsupportedEntry},
		{name: "truncated", entries: []entry{{name: "a", body: "short", size: 50}}, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limits := tt.limits
			if limits == (Limits{}) {
				limits = DefaultLimits
			}
			data := tgz(t, tt.entries...)
			_, checkErr := Check(bytes.NewReader(data), limits)
			// The extraction directory sits inside a parent so that anything
			// written next to it (an escape) would be seen.
			parent := t.TempDir()
			dest := filepath.Join(parent, "dest")
			if err := os.Mkdir(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := Extract(bytes.NewReader(data), dest, limits)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Extract: got %v, want %v", err, tt.wantErr)
				}
				if !errors.Is(checkErr, tt.wantErr) {
					t.Errorf("Check: got %v, want %v", checkErr, tt.wantErr)
				}
			} else {
				if err != nil || checkErr != nil {
					t.Fatalf("Extract: %v, Check: %v", err, checkErr)
				}
				for name, body := range tt.want {
					got, err := os.ReadFile(filepath.Join(dest, name))
					if err != nil || string(got) != body {
						t.Errorf("%s: %q, %v; want %q", name, got, err, body)
					}
				}
			}
			if list, _ := os.ReadDir(parent); len(list) != 1 {
				t.Errorf("something was written next to the destination: %v", list)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("not gzip"), gzipped(t, "not tar")} {
		if _, err := Check(bytes.NewReader(data), DefaultLimits); !errors.Is(err, ErrMalformed) {
			t.Errorf("Check(%q): got %v, want ErrMalformed", data, err)
		}
	}
}

func gzipped(t *testing.T, s string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	if _, err := gz.Write([]byte(s + strings.Repeat("\x01", 600))); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCreateRoundTrip(t *testing.T) {
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"Chart.yaml": "name: c\n", "templates/a.yaml": "a: 1\n"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := Create(&buf, src, "c"); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	if _, err := Extract(bytes.NewReader(buf.Bytes()), dest, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		got, err := os.ReadFile(filepath.Join(dest, "c", name))
		if err != nil || string(got) != body {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
}
