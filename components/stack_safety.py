"""Which stacks may use the public passphrase and the project's own state directory.

The `local` stack (render mode, no cluster) and the `node` stack (the disposable single node
`make cluster-up` builds on this machine) hold nothing worth protecting: their state may live in
`.pulumi-state/` inside the project and their secrets are encrypted with the passphrase
`agent-platform-local`, which is public (it is in this repository). Every other stack (dev,
staging, prod and any new one) deploys to a real cluster: it must run with a state backend and a
secrets provider its operator chose, and it never falls back to the local ones.

Pure functions of the stack name and the environment, used by the program itself (so a bare
`pulumi up -s prod` refuses too) and by tools/engine.py before it starts the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

LOCAL_STACKS = ("local", "node")
LOCAL_PASSPHRASE = "agent-platform-local"
LOCAL_STATE_DIR = ".pulumi-state"


def is_local(stack: str) -> bool:
    return stack in LOCAL_STACKS


def _passphrase(environ: Mapping[str, str]) -> str | None:
    if "PULUMI_CONFIG_PASSPHRASE" in environ:
        return environ["PULUMI_CONFIG_PASSPHRASE"]
    path = environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None
    return None


def _local_state(backend: str, project_dir: Path) -> bool:
    if not backend.startswith("file://"):
        return False
    target = backend[len("file://"):].split("?", 1)[0]
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = project_dir / path
    try:
        return path.resolve() == (project_dir / LOCAL_STATE_DIR).resolve()
    except OSError:
        return False


def secrets_provider(stack_file: Path) -> str | None:
    """The `secretsprovider:` a stack file names (`pulumi stack init --secrets-provider`), if any."""
    try:
        text = stack_file.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("secretsprovider:"):
            return line.split(":", 1)[1].strip().strip("'\"") or None
    return None


def unsafe_state_or_secrets(stack: str, environ: Mapping[str, str], project_dir: Path,
                            provider: str | None = None) -> str | None:
    """Why this run must not start (one message with its fix), or None when it may. `provider` is
    the stack file's `secretsprovider` (a KMS or Vault URL makes the passphrase irrelevant)."""
    if is_local(stack):
        return None
    uses_passphrase = provider in (None, "passphrase")
    if uses_passphrase and _passphrase(environ) == LOCAL_PASSPHRASE:
        return (
            f"stack {stack!r}: its secrets would be encrypted with the public passphrase {LOCAL_PASSPHRASE!r}, "
            f"which is for the {' and '.join(LOCAL_STACKS)} stacks only. Fix: set PULUMI_CONFIG_PASSPHRASE "
            f"(or PULUMI_CONFIG_PASSPHRASE_FILE) to a passphrase of your own, or choose a secrets provider: "
            f"`pulumi stack change-secrets-provider -s {stack} <awskms://...|gcpkms://...|azurekeyvault://...|hashivault://...>`."
        )
    backend = environ.get("PULUMI_BACKEND_URL", "")
    if backend and _local_state(backend, project_dir):
        return (
            f"stack {stack!r}: its state would live in the project's {LOCAL_STATE_DIR}/, which is for the "
            f"{' and '.join(LOCAL_STACKS)} stacks only. Fix: `pulumi login <your backend>` (s3://..., "
            f"https://api.pulumi.com, file://<a directory outside the project>) and unset PULUMI_BACKEND_URL."
        )
    return None


def passphrase_for(stack: str, environ: Mapping[str, str]) -> str | None:
    """The passphrase to add to the environment: the public one for local stacks when the user
    set none, never for any other stack."""
    if is_local(stack) and _passphrase(environ) is None:
        return LOCAL_PASSPHRASE
    return None
