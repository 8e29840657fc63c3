# Two commands on a fresh machine: `make up` (pulumi up of the local stack, no cluster needed)
# and `make test`. Everything they need is installed here; built binaries live in
# ~/.cache/agent-platform (outside the repo, reused across clones).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up preview destroy template lint test test-fast toolchain kube-toolchain node-toolchain images cluster-up cluster-down drills \
	s3-server system-deps schema bench clean

# pip's output goes to .venv/pip.log and is shown in full when an install fails.
$(STAMP): requirements.txt runtime/pyproject.toml bench/requirements.txt
	@echo "venv: creating $(VENV) and installing requirements.txt (a few minutes the first time; log: $(VENV)/pip.log)"
	$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --disable-pip-version-check -r requirements.txt -r bench/requirements.txt \
	    >$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; echo "venv: pip install failed (above)"; exit 1; }
	@$(VENV)/bin/pip install --disable-pip-version-check --no-deps -e runtime \
	    >>$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; echo "venv: pip install -e runtime failed (above)"; exit 1; }
	touch $@

toolchain:
	bash tools/build-toolchain.sh

kube-toolchain:
	bash tools/build-kube.sh

# The single node's own binaries (containerd, crictl, CoreDNS, kube-router, metrics-server).
node-toolchain: kube-toolchain
	bash tools/build-node.sh

# The runtime, reference agent and PostgreSQL images for the node (debootstrap + PyPI wheels, as
# OCI archives in the cache), rebuilt only when an input changes.
images: $(STAMP) system-deps
	$(PY) -m tools.node.platform_images

# A real single-node Kubernetes in a network namespace, the node stack deployed on it by
# `pulumi up`, and the gateway forwarded to 127.0.0.1:8080. `make cluster-down` removes it all.
cluster-up: $(STAMP) toolchain node-toolchain images
	$(PY) -m tools.node up
	$(PY) -m tools.node deploy

cluster-down: $(STAMP)
	$(PY) -m tools.node down

# The drills against the node `make cluster-up` deployed (tools/drills); the reliability report,
# with a timeline per drill, goes to build/drills/report.md.
drills: $(STAMP)
	$(PY) -m tools.drills --out build/drills

# The S3-compatible server the recovery tests store off-cluster backups in (versitygw).
s3-server:
	bash tools/build-s3-server.sh

# Debian packages the tests use (PostgreSQL, Prometheus/promtool, ...), installed when missing.
system-deps:
	bash tools/install-system-deps.sh

# `pulumi up -s $(STACK) --policy-pack policies --policy-pack-config stacks/policy-config.$(STACK).json`
# with the pinned CLI; tools/engine.py prints each command it runs and refuses the local
# passphrase and state directory for any stack but local and node.
STACK ?= local

up: $(STAMP) toolchain
	$(PY) tools/engine.py up --stack $(STACK)

preview: $(STAMP) toolchain
	$(PY) tools/engine.py preview --stack $(STACK)

destroy: $(STAMP) toolchain
	$(PY) tools/engine.py destroy --stack $(STACK)

# Any stack's manifests to build/manifests/$(STACK)/ without a cluster (like `helm template`).
template: $(STAMP) toolchain
	$(PY) tools/engine.py template --stack $(STACK)

# Lint and type checks (configuration in pyproject.toml); `make test` runs them first.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint $(STAMP) toolchain node-toolchain system-deps s3-server images
	$(PY) -m pytest

# Components, config, runtime and policies only: no engine, no API server.
test-fast: $(STAMP) system-deps s3-server
	$(PY) -m pytest tests/components tests/runtime tests/policies

schema: $(STAMP)
	$(PY) tools/stack_schema.py

# Every benchmark in bench/ (each prints ratios against baselines measured in the same run);
# one alone: `.venv/bin/python -m bench NAME`.
bench: $(STAMP) toolchain system-deps
	bash tools/install-system-deps.sh tools/apt-packages-bench.txt
	for name in engine runtime recovery; do $(PY) -m bench $$name || exit 1; done

clean:
	rm -rf build .pulumi-state .pulumi-home
