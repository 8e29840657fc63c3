#!/usr/bin/env bash
# Builds a real Kubernetes control plane and node binaries for the cluster and node tests
# (tests/cluster, tests/node) from the Go module proxy, into a cache outside the repository keyed
# by version (nothing built is committed; CI on the same machine reuses the binaries).
# Idempotent: a binary that is already there is not rebuilt. Each build prints its elapsed time
# on stderr. The last line on stdout is the bin directory.
#
#   kube-apiserver, kube-controller-manager,
#   kube-scheduler, kubelet, kube-proxy       k8s.io/kubernetes $KUBE_VERSION  (tools/go/kube)
#   etcd                                      go.etcd.io/etcd/server/v3 $ETCD_VERSION (tools/go/kube/etcd)
#
# The node's binaries come from the same release as the API server (version skew is then never a
# question); tools/build-node.sh builds the rest of the node (containerd, CoreDNS, ...).
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging module with a
# ./staging path that the module zip lacks. The wrapper module replaces them with the published
# v0.x tags of the same release instead. The version ldflags are required: without them the
# servers report v0.0.0-master and the Pulumi Kubernetes provider rejects the cluster as older
# than v1.13.
set -euo pipefail

KUBE_VERSION=v1.34.4
ETCD_VERSION=v3.6.16

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${AGENT_PLATFORM_CACHE:-$HOME/.cache/agent-platform}"
bin="$cache/kube-$KUBE_VERSION/bin"
mkdir -p "$bin"
export CGO_ENABLED=0

# One build at a time per cache (parallel test sessions may all find the binaries missing).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/kube-$KUBE_VERSION/.build.lock"
  flock 9
fi

kube_ldflags() {
  # Reproducible version stamp: the release tag's time as the build date; the module zip has no
  # git metadata, so the commit is left empty and the tree is the pinned release (clean).
  local minor="${KUBE_VERSION#v1.}" date pkg flags="-s -w"
  minor="${minor%%.*}"
  date="$(cd "$here/go/kube" && go list -m \
            -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=${date:-1970-01-01T00:00:00Z}"
  done
  echo "$flags"
}

# nice: the machine's cores are shared with the tests and other builds.
for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  if [ ! -x "$bin/$name" ]; then
    echo "building $name $KUBE_VERSION with $(go version | cut -d' ' -f3) (minutes on a cold cache with 2 cores)" >&2
    start=$SECONDS
    ldflags="$(kube_ldflags)"
    (cd "$here/go/kube" && nice -n 19 go build -trimpath -ldflags "$ldflags" \
       -o "$bin/$name.tmp" "k8s.io/kubernetes/cmd/$name")
    mv "$bin/$name.tmp" "$bin/$name"
    echo "built $name in $((SECONDS - start))s" >&2
  fi
done

if [ ! -x "$bin/etcd" ]; then
  echo "building etcd $ETCD_VERSION (a few minutes on a cold cache)" >&2
  start=$SECONDS
  (cd "$here/go/kube/etcd" && nice -n 19 go build -trimpath \
     -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
     -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$bin/etcd.tmp" "$bin/etcd"
  echo "built etcd in $((SECONDS - start))s" >&2
fi

echo "$bin"
