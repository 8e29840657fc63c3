#!/usr/bin/env bash
# Builds versitygw (Versity S3 Gateway, Apache-2.0: a real S3 API server with a POSIX backend)
# from the Go module proxy into ~/.cache/agent-platform/versitygw-<version>/bin/, only when it is
# missing. The recovery tests start it on 127.0.0.1 as the off-cluster S3-compatible store.
# Chosen over MinIO (no module version the proxy serves as a plain release; a far larger build)
# and s3proxy (needs a Maven client and a JVM at test time).
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
cache="${AGENT_PLATFORM_CACHE:-$HOME/.cache/agent-platform}"
root="$cache/versitygw-$VERSITYGW_VERSION"
if [ -x "$root/bin/versitygw" ]; then
  echo "$root/bin/versitygw"
  exit 0
fi
mkdir -p "$root"
tmp="$(mktemp -d "$root/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
# GOBIN into a temporary directory first, so an interrupted build never leaves a binary behind.
CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$tmp" nice -n 10 go install \
  "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >&2
mkdir -p "$root/bin"
mv "$tmp/versitygw" "$root/bin/versitygw"
echo "built versitygw $VERSITYGW_VERSION in $(( $(date +%s) - start )) s" >&2
echo "$root/bin/versitygw"
