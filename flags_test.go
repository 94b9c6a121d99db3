package main

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusteraddon"
)

func parse(t *testing.T, args ...string) (options, zapcore.Level, error) {
	t.Helper()
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	opts, zapOpts, _, err := parseFlags(fs, args)
	level := zapcore.InfoLevel
	if l, ok := zapOpts.Level.(zapcore.Level); ok {
		level = l
	}
	return opts, level, err
}

// TestReferenceFlags: a Deployment written for the SCS reference operator starts with its flags
// honoured, or is refused with a message naming what to use instead.
func TestReferenceFlags(t *testing.T) {
	opts, level, err := parse(t, "--qps=10", "--burst=20", "--namespace=team-a", "--leader-elect-namespace=ops",
		"--log-level=debug", "--clusterstack-concurrency=2", "--clusterstackrelease-concurrency=3", "--clusteraddon-concurrency=5",
		"--metrics-bind-address=:8080", "--health-probe-bind-address=:9440", "--leader-elect", "--sync-period=5m")
	if err != nil {
		t.Fatal(err)
	}
	if opts.qps != 10 || opts.burst != 20 || !slices.Equal(opts.watchNamespaces, []string{"team-a"}) || opts.leaderElectNamespace != "ops" ||
		opts.concurrency.clusterStack != 2 || opts.concurrency.clusterStackRelease != 3 || opts.concurrency.clusterAddon != 5 ||
		opts.metricsAddr != ":8080" || opts.probeAddr != ":9440" || !opts.leaderElect || opts.syncPeriod != 5*time.Minute || level != zapcore.DebugLevel {
		t.Errorf("reference flags not honoured: %+v, log level %v", opts, level)
	}

	for _, tc := range []struct {
		args      []string
		insteadOf string
	}{
		{[]string{"--release-dir=/tmp/downloads/"}, "--release-cache-dir"},
		{[]string{"--local"}, "spec.source.local"},
		{[]string{"--local=true"}, "spec.source.local"},
		{[]string{"--watch-filter=x"}, "--namespace"},
		{[]string{"--log-level=trace"}, "debug, info or error"},
	} {
		if _, _, err := parse(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.insteadOf) {
			t.Errorf("%v: error %v, want one naming %q", tc.args, err, tc.insteadOf)
		}
	}
}

func TestFlagDefaults(t *testing.T) {
	opts, level, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if opts.qps != 50 || opts.burst != 100 || opts.watchNamespaces != nil || opts.syncPeriod != 0 || !opts.webhooks || !opts.metricsSecure || level != zapcore.InfoLevel {
		t.Errorf("defaults: %+v, log level %v", opts, level)
	}
	if err := opts.concurrency.validate(); err != nil {
		t.Errorf("default concurrency refused: %v", err)
	}
	if c := cacheOptions(opts); c.DefaultNamespaces != nil || c.SyncPeriod != nil {
		t.Errorf("default cache options restrict the cache: %+v", c)
	}
	opts, _, _ = parse(t, "--namespace=a, b", "--sync-period=1m")
	if c := cacheOptions(opts); len(c.DefaultNamespaces) != 2 || c.SyncPeriod == nil || *c.SyncPeriod != time.Minute {
		t.Errorf("cache options of two namespaces and a sync period: %+v", c)
	}
}

// TestFleetFlags: the workers of the ClusterAddon controllers and the workload clients' rate are
// flags, with the controllers' defaults, and zero workers are refused.
func TestFleetFlags(t *testing.T) {
	opts, _, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if opts.concurrency.clusterAddon != clusteraddon.DefaultWorkers || opts.concurrency.clusterAddonCreate != clusteraddon.DefaultCreateWorkers ||
		opts.workloadQPS != clusteraddon.DefaultWorkloadQPS || opts.workloadBurst != clusteraddon.DefaultWorkloadBurst {
		t.Errorf("defaults: %+v", opts)
	}
	opts, _, err = parse(t, "--clusteraddon-create-concurrency=3", "--workload-qps=7", "--workload-burst=9")
	if err != nil {
		t.Fatal(err)
	}
	if opts.concurrency.clusterAddonCreate != 3 || opts.workloadQPS != 7 || opts.workloadBurst != 9 {
		t.Errorf("flags not honoured: %+v", opts)
	}
	opts.concurrency.clusterAddonCreate = 0
	if err := opts.concurrency.validate(); err == nil || !strings.Contains(err.Error(), "--clusteraddon-create-concurrency") {
		t.Errorf("zero create workers: error %v, want one naming the flag", err)
	}
}
