#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target of the module for a bounded number of executions each (default
# 100000x), one at a time: `go test -fuzz` accepts a single target per package and run.
#
# The budget is a count, not a duration, on purpose: with a duration, Go 1.26's fuzz coordinator
# can fail a target with a bare "context deadline exceeded" (no crasher written) when its workers
# are starved at the deadline on a loaded machine (golang/go#75804, fixed in Go 1.27). A count has
# no deadline to race, so a failure here always means a real finding.
set -euo pipefail
fuzztime=${1:-100000x}
case $fuzztime in
  *x) ;;
  *) echo "fuzz.sh: give an execution count such as 20000x, not '$fuzztime' (see the comment above)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz: $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
  done
done
