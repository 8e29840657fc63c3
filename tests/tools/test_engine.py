"""tools/engine.py: the environment `make up/preview/template` give the bare CLI, and what it refuses.

No CLI runs here (tests/engine runs it): only the choice of backend, secrets and PULUMI_HOME.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.stacks import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import engine  # noqa: E402

BIN = Path("/opt/toolchain/bin")


@pytest.fixture
def user(monkeypatch, tmp_path) -> Path:
    """A user with no Pulumi settings at all: no backend, no passphrase, an empty ~/.pulumi."""
    for key in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_HOME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def login(home: Path, url: str) -> None:
    (home / ".pulumi").mkdir(exist_ok=True)
    (home / ".pulumi" / "credentials.json").write_text(json.dumps({"current": url, "accounts": {url: {}}}))


def test_local_gets_the_project_state_and_the_public_passphrase(user, tmp_path):
    env = engine.engine_env(BIN, "local", work_dir=tmp_path)
    assert env["PULUMI_BACKEND_URL"] == f"file://{tmp_path / '.pulumi-state'}"
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "agent-platform-local"
    assert env["PATH"].startswith(f"{BIN}:")
    assert "PULUMI_HOME" not in env  # yours (~/.pulumi), never one forced into the project


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_other_stacks_without_a_backend_are_refused(user, stack):
    with pytest.raises(engine.UnsafeRun, match=f"stack '{stack}' has no state backend: run `pulumi login"):
        engine.engine_env(BIN, stack, work_dir=ROOT)


def test_other_stacks_without_a_secrets_provider_are_refused(user, monkeypatch):
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://agents-state")
    with pytest.raises(engine.UnsafeRun, match="stack 'prod' has no secrets provider"):
        engine.engine_env(BIN, "prod", work_dir=ROOT)


def test_other_stacks_refuse_the_public_passphrase_even_when_set_by_hand(user, monkeypatch):
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://agents-state")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "agent-platform-local")
    with pytest.raises(engine.UnsafeRun, match="public passphrase"):
        engine.engine_env(BIN, "prod", work_dir=ROOT)


def test_other_stacks_refuse_the_project_state_directory(user, monkeypatch):
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{ROOT / '.pulumi-state'}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "mine")
    with pytest.raises(engine.UnsafeRun, match=r"\.pulumi-state/"):
        engine.engine_env(BIN, "staging", work_dir=ROOT)


def test_pulumi_login_is_honoured_for_every_stack(user, monkeypatch):
    login(user, "s3://agents-state")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "mine")
    prod = engine.engine_env(BIN, "prod", work_dir=ROOT)
    assert "PULUMI_BACKEND_URL" not in prod  # the CLI uses your login
    assert prod["PULUMI_CONFIG_PASSPHRASE"] == "mine"
    assert "PULUMI_BACKEND_URL" not in engine.engine_env(BIN, "local", work_dir=ROOT)


def test_the_pulumi_cloud_backend_brings_its_own_secrets_provider(user, monkeypatch):
    monkeypatch.setenv("PULUMI_BACKEND_URL", "https://api.pulumi.com")
    env = engine.engine_env(BIN, "prod", work_dir=ROOT)
    assert "PULUMI_CONFIG_PASSPHRASE" not in env


def test_the_command_printed_is_the_one_a_user_types():
    assert engine.cli_command("up", "prod", ["policies"], None) == [
        "pulumi", "up", "-s", "prod", "--yes", "--policy-pack", "policies",
        "--policy-pack-config", "stacks/policy-config.prod.json",
    ]
    outputs = engine.cli_command("outputs", "dev", ["policies"], None)
    assert outputs == ["pulumi", "stack", "output", "--json", "-s", "dev"]


def test_main_refuses_before_starting_the_cli(user, monkeypatch, capsys):
    monkeypatch.setattr(engine, "toolchain_bin", lambda: BIN)
    assert engine.main(["up", "--stack", "prod"]) == 2
    err = capsys.readouterr().err
    assert "error: stack 'prod' has no state backend" in err and "Traceback" not in err
