package source

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	downloadsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clusterstack_release_downloads_total",
		Help: "Release downloads started, by source type.",
	}, []string{"source"})
	downloadFailuresTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clusterstack_release_download_failures_total",
		Help: "Release downloads that failed, by source type.",
	}, []string{"source"})
	downloadBytesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clusterstack_release_download_bytes_total",
		Help: "Bytes of successfully downloaded releases, by source type.",
	}, []string{"source"})
	downloadDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "clusterstack_release_download_duration_seconds",
		Help:    "Time to download one release, successful or not, by source type.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"source"})
)

func init() {
	metrics.Registry.MustRegister(downloadsTotal, downloadFailuresTotal, downloadBytesTotal, downloadDuration)
}

// Instrument wraps s so that every Fetch is counted, timed and measured.
// Listing is not a download and is not recorded.
func Instrument(s Source) Source {
	switch s.(type) {
	case *instrumented, *volatileInstrumented:
		return s
	}
	if v, ok := s.(interface{ Volatile() bool }); ok && v.Volatile() {
		return &volatileInstrumented{instrumented{s}}
	}
	return &instrumented{s}
}

type instrumented struct{ Source }

// volatileInstrumented keeps the Volatile marker of the wrapped source visible.
type volatileInstrumented struct{ instrumented }

func (volatileInstrumented) Volatile() bool { return true }

func (i *instrumented) Fetch(ctx context.Context, n name.Release, destDir string) error {
	label := string(i.Type())
	downloadsTotal.WithLabelValues(label).Inc()
	start := time.Now()
	err := i.Source.Fetch(ctx, n, destDir)
	downloadDuration.WithLabelValues(label).Observe(time.Since(start).Seconds())
	if err != nil {
		downloadFailuresTotal.WithLabelValues(label).Inc()
		return err
	}
	downloadBytesTotal.WithLabelValues(label).Add(float64(dirSize(destDir)))
	return nil
}

func dirSize(dir string) int64 {
	entries, _ := os.ReadDir(dir)
	var n int64
	for _, e := range entries {
		if info, err := os.Lstat(filepath.Join(dir, e.Name())); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
	}
	return n
}
