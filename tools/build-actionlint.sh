#!/usr/bin/env bash
# Builds actionlint (the GitHub Actions workflow checker, github.com/rhysd/actionlint) from the
# Go module proxy into a cache outside the repository, keyed by version; tests/tools check the
# workflow template with it. Idempotent: an existing binary is not rebuilt. The last line on
# stdout is the binary's path.
set -euo pipefail

ACTIONLINT_VERSION=v1.7.12

cache="${AGENT_PLATFORM_CACHE:-$HOME/.cache/agent-platform}"
dir="$cache/actionlint-$ACTIONLINT_VERSION"
mkdir -p "$dir/bin"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$dir/.build.lock"
  flock 9
fi
if [ ! -x "$dir/bin/actionlint" ]; then
  # A private module cache inside the versioned directory: the build never depends on, or
  # writes into, a GOPATH another build is using.
  GOMODCACHE="$dir/gomod" GOBIN="$dir/bin" CGO_ENABLED=0 GOFLAGS=-modcacherw \
    nice -n 10 go install -trimpath -ldflags "-s -w" \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2
  rm -rf "$dir/gomod"
fi
echo "$dir/bin/actionlint"
