#!/usr/bin/env bash
# Builds the parts of the single-node Kubernetes (tools/node) that are not the Kubernetes release
# itself (tools/build-kube.sh builds that) from the Go module proxy, into the cache outside the
# repository keyed by version. Idempotent: what is already there is not rebuilt; each build prints
# its elapsed time on stderr.
#
#   containerd, containerd-shim-runc-v2, ctr   github.com/containerd/containerd/v2  $CONTAINERD_VERSION
#   crictl                                     sigs.k8s.io/cri-tools                $CRICTL_VERSION
#   coredns                                    github.com/coredns/coredns           $COREDNS_VERSION
#   kube-router (its NetworkPolicy firewall)   github.com/cloudnativelabs/kube-router/v2 $KUBE_ROUTER_VERSION
#   metrics-server                             sigs.k8s.io/metrics-server           $METRICS_SERVER_VERSION
#
# The versions are the ones tools/node/node.py and tools/node/images.py look for: change both.
# runc and the CNI plugins are Debian's (tools/apt-packages.txt).
set -euo pipefail

CONTAINERD_VERSION=v2.4.2
CRICTL_VERSION=v1.34.0
COREDNS_VERSION=v1.15.0
KUBE_ROUTER_VERSION=v2.1.0
METRICS_SERVER_VERSION=v0.8.0

cache="${AGENT_PLATFORM_CACHE:-$HOME/.cache/agent-platform}"
mkdir -p "$cache"
export CGO_ENABLED=0

if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.build-node.lock"
  flock 9
fi

# install DIR TAGS PACKAGE@VERSION...: `go install` each into DIR/bin unless its binary is there.
install() {
  local dir="$cache/$1" tags="$2" target name start
  shift 2
  for target in "$@"; do
    name="${target%@*}"; name="${name##*/}"
    [ -x "$dir/bin/$name" ] && continue
    echo "building $name (${target#*@})" >&2
    start=$SECONDS
    mkdir -p "$dir/tmp"
    # Into a scratch GOBIN first, so an interrupted build never leaves a half binary behind.
    GOBIN="$dir/tmp" nice -n 19 go install -trimpath -tags "$tags" -ldflags "-s -w" "$target"
    mkdir -p "$dir/bin"
    mv "$dir/tmp/$name" "$dir/bin/$name"
    echo "built $name in $((SECONDS - start))s" >&2
  done
  rm -rf "$dir/tmp"
}

# btrfs needs cgo; this node uses overlayfs.
install "containerd-$CONTAINERD_VERSION" no_btrfs \
  "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
install "crictl-$CRICTL_VERSION" "" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
install "coredns-$COREDNS_VERSION" "" "github.com/coredns/coredns@$COREDNS_VERSION"
install "kube-router-$KUBE_ROUTER_VERSION" "" \
  "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION"
install "metrics-server-$METRICS_SERVER_VERSION" "" \
  "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"

echo "$cache"
