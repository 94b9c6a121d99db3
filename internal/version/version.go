// Package version says which build of the operator runs: the version, commit and build date the
// Makefile and Dockerfile stamp into the binary with -ldflags -X, or, for a plain `go build` or
// `go install`, what the Go toolchain recorded in the binary's build information.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set by the Makefile and Dockerfile through -ldflags "-X <package>.version=...". Empty means
// "not stamped": the build information fills what it knows.
var (
	version   string
	revision  string
	buildDate string
)

// Info identifies a build.
type Info struct {
	// Version is a release tag (v0.1.0), a `git describe` of an untagged commit, or "(devel)".
	Version string
	// Revision is the commit the binary was built from, "unknown" when nobody recorded it.
	Revision string
	// BuildDate is when the binary was built (RFC 3339), "unknown" when nobody recorded it; the
	// toolchain only records the commit's time, which is used instead.
	BuildDate string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
}

// Get returns the running binary's build.
func Get() Info {
	return get(version, revision, buildDate, debug.ReadBuildInfo)
}

func get(v, rev, date string, read func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: v, Revision: rev, BuildDate: date, GoVersion: runtime.Version()}
	if bi, ok := read(); ok {
		if info.Version == "" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && info.Revision == "":
				info.Revision = s.Value
			case s.Key == "vcs.time" && info.BuildDate == "":
				info.BuildDate = s.Value
			}
		}
	}
	for _, f := range []*string{&info.Version, &info.Revision, &info.BuildDate} {
		if *f == "" {
			*f = "unknown"
		}
	}
	if info.Version == "unknown" {
		// What the toolchain says of a build from a checkout; a release always has a tag.
		info.Version = "(devel)"
	}
	return info
}

// String is what `manager --version` prints.
func (i Info) String() string {
	return fmt.Sprintf("clusterstack-operator %s (commit %s, built %s, %s)", i.Version, i.Revision, i.BuildDate, i.GoVersion)
}

// Collector is the build-info gauge clusterstack_operator_build_info{version,revision,goversion},
// always 1, as Prometheus' own build_info metrics: dashboards join it to tell which build runs.
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "clusterstack_operator_build_info",
		Help:        "The operator's build: version, commit and Go version as labels, always 1.",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": i.Revision, "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}
