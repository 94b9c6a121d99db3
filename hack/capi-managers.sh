#!/usr/bin/env bash
# capi-managers.sh builds the Cluster API managers (core, kubeadm bootstrap, kubeadm control plane)
# that the real-Cluster-API test tier (test/capi) runs as processes, from the Go module proxy,
# caches them per user keyed by version, and prints their directory (CAPI_MANAGERS_DIR).
#
# Override the cache location with CAPI_MANAGERS_CACHE_DIR; set CAPI_MANAGERS_DIR to a directory
# that already holds the three binaries to skip building altogether.
set -euo pipefail

CAPI_VERSION=1.14.2

here=$(cd "$(dirname "$0")" && pwd)

# The version is keyed into the cache directory: it must be the one hack/capi/go.mod builds.
if ! grep -Eq "^[[:space:]]*sigs\.k8s\.io/cluster-api v${CAPI_VERSION}( |\$)" "$here/capi/go.mod"; then
  echo "capi: hack/capi/go.mod does not require sigs.k8s.io/cluster-api v$CAPI_VERSION; update CAPI_VERSION in $0" >&2
  exit 1
fi
names=(capi-core capi-kubeadm-bootstrap capi-kubeadm-control-plane)

complete() {
  local d=$1 n
  for n in "${names[@]}"; do
    [[ -x "$d/$n" ]] || return 1
  done
}

if [[ -n "${CAPI_MANAGERS_DIR:-}" ]] && complete "$CAPI_MANAGERS_DIR"; then
  echo "$CAPI_MANAGERS_DIR"
  exit 0
fi

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}
dir=${CAPI_MANAGERS_CACHE_DIR:-$cache_root/clusterstack-operator/capi/v$CAPI_VERSION-$(go env GOOS)-$(go env GOARCH)}
mkdir -p "$dir"

# shellcheck source=hack/progress.sh
source "$here/progress.sh"

# Test packages and make targets may find the cache cold at once: one builds, the others wait.
lock_cache capi "$dir/.lock" "the Cluster API v$CAPI_VERSION managers"

# build NAME PACKAGE: builds into a temporary file and renames it, so an interrupted build never
# leaves a binary that looks complete. One go build at a time: the three share most packages,
# so the later ones reuse the build cache, and two cores do not thrash.
build() {
  local name=$1 pkg=$2 usual=$3
  if [[ -x "$dir/$name" ]]; then
    return 0
  fi
  # -mod=readonly: a stale go.sum fails the build instead of being rewritten behind the user's back.
  build_with_progress capi "$name" "$dir" "$usual" \
    env -C "$here/capi" CGO_ENABLED=0 go build -v -mod=readonly -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/cluster-api/version.gitVersion=v$CAPI_VERSION" \
    -o "$dir/.$name.tmp" "$pkg"
  mv "$dir/.$name.tmp" "$dir/$name"
}

# The first build compiles what the three share (about 8.5 CPU-minutes in all, cold; README).
build capi-core sigs.k8s.io/cluster-api/core \
  "5 to 10 minutes cold on two idle cores, much longer on a busy machine; about 1 minute with a warm build cache"
build capi-kubeadm-bootstrap sigs.k8s.io/cluster-api/bootstrap/kubeadm \
  "1 to 2 minutes after capi-core"
build capi-kubeadm-control-plane sigs.k8s.io/cluster-api/controlplane/kubeadm \
  "1 to 2 minutes after capi-core"

echo "$dir"
