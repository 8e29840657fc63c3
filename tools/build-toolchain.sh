#!/usr/bin/env bash
# Builds the Pulumi engine pieces this project needs from the Go module proxy, pinned to the
# PyPI packages in requirements.txt, into a cache outside the repository (nothing built is
# committed, and CI on the same machine reuses the binaries). Idempotent: a pinned binary that
# is already there is not rebuilt. Prints the bin directory (for PATH) as its last line.
#
#   pulumi                          CLI v$PULUMI_VERSION   (== the `pulumi` Python SDK)
#   pulumi-language-python          tools/pulumi_language_python.py, the Python language host
#   pulumi-resource-kubernetes      provider $K8S_PROVIDER_VERSION (== the `pulumi-kubernetes` Python SDK),
#                                   installed as a plugin into $PULUMI_HOME (default ~/.pulumi)
#   pulumi-analyzer-policy-python   the pre-language-host policy shim (`python -m pulumi.policy`)
#
# The stock language host (module sdk/python/cmd/pulumi-language-python/v3) is not served by the
# proxy this machine reaches, so the project ships its own on the Python SDK's gRPC stubs: with it
# installed beside the CLI, `pulumi up -s <stack>` works as with a stock install.
#
# A cold build takes 20-30 minutes on 2 cores; each step says what it builds, and a compile
# reports packages done and elapsed time every 15 s (on stderr; stdout is the bin directory only).
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
started=$SECONDS

say() { echo "build-toolchain: $*" >&2; }
elapsed() { printf '%dm%02ds' $(( ($SECONDS - $1) / 60 )) $(( ($SECONDS - $1) % 60 )); }

# Reads `go build -v` on stdin: each line naming a package is one compiled, anything else
# (compiler errors) is passed through. Reports every 15 s: "<what>: 312/1234 packages, 4m05s".
progress() {
  local what=$1 total=$2 start=$SECONDS last=$SECONDS done=0 line
  while IFS= read -r line; do
    if [[ "$line" =~ ^[A-Za-z0-9._~/+-]+$ ]]; then
      done=$((done + 1))
      if (( SECONDS - last >= 15 )); then
        last=$SECONDS
        say "  $what: $done/$total packages compiled, $(elapsed "$start")"
      fi
    else
      echo "$line" >&2
    fi
  done
  say "  $what: $done packages compiled (the rest were cached) in $(elapsed "$start")"
}

# The number of packages a build needs (its progress denominator).
packages_of() { go list -deps "$@" 2>/dev/null | wc -l; }

# A pulumi already on PATH at exactly the pinned version is used as it is.
if [ ! -x "$bin/pulumi" ] && ambient="$(command -v pulumi 2>/dev/null)" \
   && [ "$("$ambient" version 2>/dev/null)" = "v$PULUMI_VERSION" ]; then
  ln -sf "$ambient" "$bin/pulumi"
fi

if [ ! -x "$bin/pulumi" ]; then
  say "[1/2] pulumi CLI v$PULUMI_VERSION -> $bin/pulumi (10-15 minutes on a cold cache)"
  say "  resolving its packages (downloads the modules on a cold cache)"
  total=$(cd "$here/go/pulumi" && packages_of -tags osusergo,grpcnotrace github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  (cd "$here/go/pulumi" && go build -v -trimpath -tags osusergo,grpcnotrace \
     -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
     -o "$bin/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) 2>&1 | progress pulumi "$total"
  mv "$bin/pulumi.tmp" "$bin/pulumi"
fi

provider="$root/provider/pulumi-resource-kubernetes"
if [ ! -x "$provider" ]; then
  step_start=$SECONDS
  say "[2/2] pulumi-resource-kubernetes v$K8S_PROVIDER_VERSION -> $provider (10-15 minutes on a cold cache)"
  say "  downloading the provider module from the proxy"
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
     && say "  generating the provider's embedded schema (go run generate.go)" \
     && VERSION="$K8S_PROVIDER_VERSION" go run generate.go >&2 \
     && total=$(packages_of .) \
     && go build -v -trimpath \
          -ldflags "-s -w -X $K8S_PROVIDER_MODULE/pkg/version.Version=$K8S_PROVIDER_VERSION" \
          -o "$provider.tmp" . 2>&1 | progress pulumi-resource-kubernetes "$total")
  mv "$provider.tmp" "$provider"
  rm -rf "$scratch"
  say "  provider built in $(elapsed "$step_start")"
fi

# The provider as a plugin under its exact version, in the PULUMI_HOME of whoever runs this (a
# bare `pulumi up` looks there; automatic plugin downloads cannot work on this machine).
home="${PULUMI_HOME:-$HOME/.pulumi}"
if [ ! -x "$home/plugins/resource-kubernetes-v$K8S_PROVIDER_VERSION/pulumi-resource-kubernetes" ]; then
  say "installing the provider plugin into $home/plugins"
  PULUMI_HOME="$home" PULUMI_SKIP_UPDATE_CHECK=true "$bin/pulumi" plugin install resource kubernetes \
    "$K8S_PROVIDER_VERSION" --file "$provider" >&2
fi

# The Python language host, written on every run like the shim below (a change reaches machines
# that already have the binaries). It runs on the interpreter of the project the CLI runs in
# (./.venv; the CLI starts language hosts in the project directory), else on that of the checkout
# that installed it; programs and policy packs run in their own virtualenv
# (runtime.options.virtualenv), whatever the host runs on.
install -m 0644 "$here/pulumi_language_python.py" "$bin/pulumi_language_python.py.tmp"
mv "$bin/pulumi_language_python.py.tmp" "$bin/pulumi_language_python.py"
installer_python="$(cd "$here/.." && pwd)/.venv/bin/python"
cat > "$bin/pulumi-language-python.tmp" <<HOST
#!/usr/bin/env bash
# Pulumi's Python language host: pulumi_language_python.py beside this file (agent-platform,
# installed by tools/build-toolchain.sh).
here="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)"
for python in "\$PWD/.venv/bin/python" "$installer_python"; do
  if [ -x "\$python" ]; then exec "\$python" -u "\$here/pulumi_language_python.py" "\$@"; fi
done
echo "pulumi-language-python: no virtualenv with the Pulumi SDK in \$PWD/.venv or $installer_python (create one with: make .venv/.installed)" >&2
exit 1
HOST
chmod +x "$bin/pulumi-language-python.tmp"
mv "$bin/pulumi-language-python.tmp" "$bin/pulumi-language-python"

# The CLI falls back to `pulumi-analyzer-policy-<runtime>` when no language host is found,
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

if (( SECONDS - started > 5 )); then say "toolchain ready in $(elapsed "$started")"; fi
echo "$bin"
