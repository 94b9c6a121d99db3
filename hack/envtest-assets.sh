#!/usr/bin/env bash
# envtest-assets.sh builds the kube-apiserver and etcd binaries that envtest needs from the Go
# module proxy (the usual download tool needs the internet, which CI and air-gapped machines lack),
# caches them per user keyed by version, and prints the directory to use as KUBEBUILDER_ASSETS.
#
# Override the cache location with ENVTEST_ASSETS_DIR; set KUBEBUILDER_ASSETS to a directory that
# already holds both binaries to skip building altogether.
set -euo pipefail

KUBE_VERSION=1.37.2
ETCD_VERSION=3.7.3

here=$(cd "$(dirname "$0")" && pwd)

if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "${KUBEBUILDER_ASSETS}/kube-apiserver" && -x "${KUBEBUILDER_ASSETS}/etcd" ]]; then
  echo "${KUBEBUILDER_ASSETS}"
  exit 0
fi

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}
dir=${ENVTEST_ASSETS_DIR:-$cache_root/clusterstack-operator/envtest/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-$(go env GOOS)-$(go env GOARCH)}
mkdir -p "$dir"

# shellcheck source=hack/progress.sh
source "$here/progress.sh"

# Test packages run in parallel and may all find the cache cold: one builds, the others wait.
lock_cache envtest "$dir/.lock" "kube-apiserver v$KUBE_VERSION and etcd v$ETCD_VERSION"

# build NAME MODULE_DIR PACKAGE LDFLAGS USUAL: builds into a temporary file and renames it, so an
# interrupted build never leaves a binary that looks complete.
build() {
  local name=$1 moddir=$2 pkg=$3 ldflags=$4 usual=$5
  if [[ -x "$dir/$name" ]]; then
    return 0
  fi
  build_with_progress envtest "$name" "$dir" "$usual" \
    env -C "$moddir" CGO_ENABLED=0 go build -v -trimpath -ldflags "$ldflags" -o "$dir/.$name.tmp" "$pkg"
  mv "$dir/.$name.tmp" "$dir/$name"
}

major=${KUBE_VERSION%%.*}
minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
# The figures are cold builds with the modules downloaded (README, Set up on a fresh machine).
build etcd "$here/envtest/etcd" go.etcd.io/etcd/server/v3 "-s -w" \
  "about 70 s cold on two idle cores, longer beside kube-apiserver's build" &
etcd_pid=$!
build kube-apiserver "$here/envtest/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver \
  "-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor" \
  "6 minutes cold on two idle cores, up to 17 on a busy machine; about 15 s to relink"
wait "$etcd_pid"

echo "$dir"
