#!/usr/bin/env bash
# Builds the Pulumi engine pieces this project needs from the Go module proxy, pinned to the
# PyPI packages in requirements.txt, into a cache outside the repository (nothing built is
# committed, and CI on the same machine reuses the binaries). Idempotent: a pinned binary that
# is already there is not rebuilt.
#
#   pulumi                          CLI v$PULUMI_VERSION   (== the `pulumi` Python SDK)
#   pulumi-resource-kubernetes      provider $K8S_PROVIDER_VERSION (== the `pulumi-kubernetes` Python SDK)
#   pulumi-analyzer-policy-python   a two-line shim that runs `python -m pulumi.policy`
#
# The Python language host (module sdk/python/cmd/pulumi-language-python/v3) is not served by
# the proxy this machine reaches, so programs run through the Automation API's in-process
# language server instead (tools/engine.py) and the CLI falls back to the policy shim.
set -euo pipefail

PULUMI_VERSION=3.260.0
# pulumi-kubernetes 4.25.0a1768448096 was published from this commit (its alpha suffix is the
# commit's Unix time, 2026-01-15 03:34:56 UTC); it is the provider commit the proxy serves.
K8S_PROVIDER_MODULE=github.com/pulumi/pulumi-kubernetes/provider/v4
K8S_PROVIDER_PSEUDO=v4.0.0-20260115033456-f47bc2d6f199
K8S_PROVIDER_VERSION=4.25.0-alpha.1768448096
# The provider's go.mod replaces sdk/v4 with ../sdk; this is the release it requires.
K8S_SDK_VERSION=v4.24.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${AGENT_PLATFORM_CACHE:-$HOME/.cache/agent-platform}"
root="$cache/pulumi-v$PULUMI_VERSION-k8s-v$K8S_PROVIDER_VERSION"
# bin/ goes on PATH (CLI, policy shim); the provider stays off PATH and is installed as a plugin
# under its exact version, so the engine never picks up some other ambient provider.
bin="$root/bin"
mkdir -p "$bin" "$root/provider"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# A pulumi already on PATH at exactly the pinned version is used as it is.
if [ ! -x "$bin/pulumi" ] && ambient="$(command -v pulumi 2>/dev/null)" \
   && [ "$("$ambient" version 2>/dev/null)" = "v$PULUMI_VERSION" ]; then
  ln -sf "$ambient" "$bin/pulumi"
fi

if [ ! -x "$bin/pulumi" ]; then
  echo "building pulumi v$PULUMI_VERSION (several minutes on a cold cache)" >&2
  (cd "$here/go/pulumi" && go build -trimpath -tags osusergo,grpcnotrace \
     -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
     -o "$bin/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  mv "$bin/pulumi.tmp" "$bin/pulumi"
fi

provider="$root/provider/pulumi-resource-kubernetes"
if [ ! -x "$provider" ]; then
  echo "building pulumi-resource-kubernetes v$K8S_PROVIDER_VERSION (several minutes on a cold cache)" >&2
  go mod download "$K8S_PROVIDER_MODULE@$K8S_PROVIDER_PSEUDO"
  src="$(go mod download -json "$K8S_PROVIDER_MODULE@$K8S_PROVIDER_PSEUDO" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  # The embedded schema files are generated, not shipped in the module zip: build from a
  # scratch copy so the read-only module cache stays untouched.
  scratch="$cache/src/kubernetes-$K8S_PROVIDER_VERSION"
  rm -rf "$scratch" && mkdir -p "$(dirname "$scratch")" && cp -r "$src" "$scratch" && chmod -R u+w "$scratch"
  (cd "$scratch" \
     && go mod edit -dropreplace github.com/pulumi/pulumi-kubernetes/sdk/v4 \
                    -require "github.com/pulumi/pulumi-kubernetes/sdk/v4@$K8S_SDK_VERSION" \
     && cd cmd/pulumi-resource-kubernetes \
     && VERSION="$K8S_PROVIDER_VERSION" go run generate.go \
     && go build -trimpath \
          -ldflags "-s -w -X $K8S_PROVIDER_MODULE/pkg/version.Version=$K8S_PROVIDER_VERSION" \
          -o "$provider.tmp" .)
  mv "$provider.tmp" "$provider"
  rm -rf "$scratch"
fi

# The CLI falls back to `pulumi-analyzer-policy-<runtime>` when no language host is installed,
# passing the engine address, the pack directory and the runtime options as -key=value. Written
# on every run (it is tiny), so a change here reaches machines that already have the binaries.
cat > "$bin/pulumi-analyzer-policy-python" <<'SHIM'
#!/usr/bin/env bash
# Runs a Python policy pack with `python -m pulumi.policy` in the pack's virtualenv.
set -euo pipefail
python=python
args=()
for arg in "$@"; do
  case "$arg" in
    -virtualenv=*) venv="${arg#-virtualenv=}"; python="$venv/bin/python" ;;
    -toolchain=*|-typechecker=*) ;;
    *) args+=("$arg") ;;
  esac
done
exec "$python" -u -m pulumi.policy "${args[@]}"
SHIM
chmod +x "$bin/pulumi-analyzer-policy-python"

echo "$bin"
