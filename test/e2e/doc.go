// Package e2e holds end-to-end benchmarks of the real manager binary: `go build` of the
// repository's main package, run as a subprocess against a local control plane (envtest's
// kube-apiserver and etcd), several more API servers standing in for the workload clusters, an
// in-process OCI registry as the default release source (OCI_REGISTRY/OCI_REPOSITORY) and the
// OpenStack double. Unlike the controllers' package benchmarks, which run in the test process,
// the figures here (time to ready, API writes and OpenStack calls once converged, peak RSS) are
// those of the operator process alone.
//
// The package has only benchmarks, so `go test ./...` runs nothing heavy here; `make bench`
// (or `go test -run '^$' -bench . -benchtime 1x ./test/e2e/`) runs them. They measure and never
// assert a figure: they fail only when something does not work (a release or an addon never
// becomes ready within a generous timeout, the manager exits).
package e2e
