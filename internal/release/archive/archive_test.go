package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
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
		// Links, hostile or not, are refused: each alone may look harmless, together they
		// escape (a -> d/up, d/up -> ../..), and the release format does not need them.
		{name: "symlink inside", entries: []entry{{name: "a/b.txt", body: "hi"}, {name: "a/c.txt", link: "b.txt", typ: tar.TypeSymlink}}, wantErr: ErrLink},
		{name: "hard link inside", entries: []entry{{name: "a.txt", body: "hi"}, {name: "d.txt", link: "a.txt", typ: tar.TypeLink}}, wantErr: ErrLink},
		{
			name: "symlink chain out",
			entries: []entry{
				{name: "c/", typ: tar.TypeDir}, {name: "c/d/", typ: tar.TypeDir},
				{name: "c/d/up", link: "../..", typ: tar.TypeSymlink},
				{name: "c/a", link: "d/up/..", typ: tar.TypeSymlink},
			},
			wantErr: ErrLink,
		},
		{name: "symlink whose parent has no entry", entries: []entry{{name: "nodir/link", link: "x", typ: tar.TypeSymlink}}, wantErr: ErrLink},
		{name: "symlink to /proc/self", entries: []entry{{name: "c/token", link: "/proc/self/root/var/run/secrets/kubernetes.io/serviceaccount/token", typ: tar.TypeSymlink}}, wantErr: ErrLink},
		{name: "relative symlink to /proc/self", entries: []entry{{name: "c/p", link: "../../../../../../proc/self", typ: tar.TypeSymlink}}, wantErr: ErrLink},
		{name: "symlink out", entries: []entry{{name: "a/link", link: "../../etc", typ: tar.TypeSymlink}}, wantErr: ErrUnsafePath},
		{name: "absolute symlink", entries: []entry{{name: "link", link: "/etc/passwd", typ: tar.TypeSymlink}}, wantErr: ErrUnsafePath},
		{name: "hard link out", entries: []entry{{name: "link", link: "../x", typ: tar.TypeLink}}, wantErr: ErrUnsafePath},
		{name: "hard link to absent file", entries: []entry{{name: "link", link: "nothing", typ: tar.TypeLink}}, wantErr: ErrLink},
		{name: "hard link to /etc/passwd", entries: []entry{{name: "c/pw", link: "/etc/passwd", typ: tar.TypeLink}}, wantErr: ErrLink},
		{name: "directory replaces a file", entries: []entry{{name: "a", body: "x"}, {name: "a/", typ: tar.TypeDir}}, wantErr: ErrUnsafePath},
		{name: "file below a file", entries: []entry{{name: "a", body: "x"}, {name: "a/b", body: "y"}}, wantErr: ErrUnsafePath},
		{name: "file whose parent has no entry", entries: []entry{{name: "nodir/f", body: "x"}}, want: map[string]string{"nodir/f": "x"}},
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
			files, readErr := ReadFiles(bytes.NewReader(data), limits)
			if tt.wantErr != nil {
				// Check, Extract and ReadFiles apply the same rules: what one accepts, all do.
				for what, got := range map[string]error{"Extract": err, "Check": checkErr, "ReadFiles": readErr} {
					if !errors.Is(got, tt.wantErr) {
						t.Errorf("%s: got %v, want %v", what, got, tt.wantErr)
					}
				}
				if errors.Is(tt.wantErr, ErrLink) {
					// The message names the entry, so the release author knows what to fix.
					first := ""
					for _, e := range tt.entries {
						if e.typ == tar.TypeSymlink || e.typ == tar.TypeLink {
							first = e.name
							break
						}
					}
					if err != nil && !strings.Contains(err.Error(), strconv.Quote(first)) {
						t.Errorf("Extract error %q does not name the link %q", err, first)
					}
				}
			} else {
				if err != nil || checkErr != nil || readErr != nil {
					t.Fatalf("Extract: %v, Check: %v, ReadFiles: %v", err, checkErr, readErr)
				}
				read := map[string]string{}
				for _, f := range files {
					read[f.Name] = string(f.Data)
				}
				if !maps.Equal(read, tt.want) {
					t.Errorf("ReadFiles: %v, want %v", read, tt.want)
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

// TestLinkIsUnsafePath keeps callers that classify ErrUnsafePath working.
func TestLinkIsUnsafePath(t *testing.T) {
	if !errors.Is(ErrLink, ErrUnsafePath) {
		t.Fatal("ErrLink does not match ErrUnsafePath")
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
