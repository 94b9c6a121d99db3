package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

func TestLocal(t *testing.T) {
	root := t.TempDir()
	a, err := fixtures.Build(root, fixtures.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixtures.Build(root, fixtures.Options{StackVersion: "v0-sha.abc1234"}); err != nil {
		t.Fatal(err)
	}
	// Not release directories: left out of the list.
	for _, d := range []string{"scratch", "open-stack-scs-1-32-v1"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "openstack-scs-1-32-v5"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := New(Config{Type: TypeLocal, Local: LocalConfig{Path: root}, LocalRoots: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := src.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"openstack-scs-1-32-v0-sha-abc1234", "openstack-scs-1-32-v1"}; !slices.Equal(names(got), want) {
		t.Errorf("List: %v, want %v", got, want)
	}

	before := testutil.ToFloat64(downloadsTotal.WithLabelValues("local"))
	beforeFail := testutil.ToFloat64(downloadFailuresTotal.WithLabelValues("local"))
	beforeBytes := testutil.ToFloat64(downloadBytesTotal.WithLabelValues("local"))
	dest := t.TempDir()
	if err := src.Fetch(context.Background(), name.MustParse("openstack-scs-1-32-v1"), dest); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, a, dest)
	if d := testutil.ToFloat64(downloadsTotal.WithLabelValues("local")) - before; d != 1 {
		t.Errorf("downloads grew by %v, want 1", d)
	}
	if d := testutil.ToFloat64(downloadBytesTotal.WithLabelValues("local")) - beforeBytes; d != float64(dirSize(a)) || d == 0 {
		t.Errorf("bytes grew by %v, want %d", d, dirSize(a))
	}

	for _, tt := range []struct {
		release string
		wantErr error
	}{
		{release: "openstack-scs-1-32-v2", wantErr: ErrNotFound},
	} {
		if err := src.Fetch(context.Background(), name.MustParse(tt.release), t.TempDir()); !errors.Is(err, tt.wantErr) {
			t.Errorf("Fetch(%q): got %v, want %v", tt.release, err, tt.wantErr)
		}
	}
	if err := src.Fetch(context.Background(), unsafeName, t.TempDir()); err == nil {
		t.Error("a non-release name was accepted")
	}
	if d := testutil.ToFloat64(downloadFailuresTotal.WithLabelValues("local")) - beforeFail; d != 2 {
		t.Errorf("failures grew by %v, want 2", d)
	}
}

func TestLocalRejects(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(t *testing.T, dir string)
		max     int64
		wantErr error
	}{
		{name: "sub-directory", mutate: func(t *testing.T, dir string) { mkdir(t, filepath.Join(dir, "sub")) }, wantErr: ErrInvalidArtifact},
		{name: "too large", max: 100, wantErr: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir, err := fixtures.Build(root, fixtures.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if tt.mutate != nil {
				tt.mutate(t, dir)
			}
			src, err := NewLocal(root, tt.max, root)
			if err != nil {
				t.Fatal(err)
			}
			if err := src.Fetch(context.Background(), name.MustParse("openstack-scs-1-32-v1"), t.TempDir()); !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}
