package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestGet(t *testing.T) {
	recorded := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{
			Main:     debug.Module{Version: "v0.3.1-0.20261201120000-0123456789ab"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-12-01T12:00:00Z"}},
		}, true
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	devel := func() (*debug.BuildInfo, bool) { return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true }

	tests := []struct {
		name               string
		version, rev, date string
		read               func() (*debug.BuildInfo, bool)
		want               Info
	}{{
		name:    "stamped by the Makefile wins over the build information",
		version: "v1.2.0", rev: "fedcba", date: "2026-12-02T00:00:00Z",
		read: recorded,
		want: Info{Version: "v1.2.0", Revision: "fedcba", BuildDate: "2026-12-02T00:00:00Z"},
	}, {
		name: "go install: the module version and the commit from the build information",
		read: recorded,
		want: Info{Version: "v0.3.1-0.20261201120000-0123456789ab", Revision: "0123456789abcdef", BuildDate: "2026-12-01T12:00:00Z"},
	}, {
		name:    "partly stamped: the rest from the build information",
		version: "v1.2.0-3-gabcdef-dirty",
		read:    recorded,
		want:    Info{Version: "v1.2.0-3-gabcdef-dirty", Revision: "0123456789abcdef", BuildDate: "2026-12-01T12:00:00Z"},
	}, {
		name: "a checkout build without VCS information",
		read: devel,
		want: Info{Version: "(devel)", Revision: "unknown", BuildDate: "unknown"},
	}, {
		name: "no build information at all",
		read: none,
		want: Info{Version: "(devel)", Revision: "unknown", BuildDate: "unknown"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.GoVersion = runtime.Version()
			if diff := cmp.Diff(tt.want, get(tt.version, tt.rev, tt.date, tt.read)); diff != "" {
				t.Errorf("build info (-want +got):\n%s", diff)
			}
		})
	}
}

func TestString(t *testing.T) {
	got := Info{Version: "v1.2.0", Revision: "fedcba", BuildDate: "2026-12-02T00:00:00Z", GoVersion: "go1.26.1"}.String()
	want := "clusterstack-operator v1.2.0 (commit fedcba, built 2026-12-02T00:00:00Z, go1.26.1)"
	if got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	info := Info{Version: "v1.2.0", Revision: "fedcba", BuildDate: "2026-12-02T00:00:00Z", GoVersion: "go1.26.1"}
	if err := reg.Register(info.Collector()); err != nil {
		t.Fatalf("registering the build info gauge: %v", err)
	}
	want := `
# HELP clusterstack_operator_build_info The operator's build: version, commit and Go version as labels, always 1.
# TYPE clusterstack_operator_build_info gauge
clusterstack_operator_build_info{goversion="go1.26.1",revision="fedcba",version="v1.2.0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "clusterstack_operator_build_info"); err != nil {
		t.Error(err)
	}
}
