"""components/stack_safety.py: the public passphrase and the project's state are for local stacks only."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.stack_safety import (
    LOCAL_PASSPHRASE,
    passphrase_for,
    secrets_provider,
    unsafe_state_or_secrets,
)

PROJECT = Path("/srv/agent-platform")


@pytest.mark.parametrize("stack", ["local", "node"])
def test_local_stacks_may_use_the_public_passphrase_and_the_project_state(stack):
    environ = {"PULUMI_CONFIG_PASSPHRASE": LOCAL_PASSPHRASE, "PULUMI_BACKEND_URL": f"file://{PROJECT}/.pulumi-state"}
    assert unsafe_state_or_secrets(stack, environ, PROJECT) is None
    assert passphrase_for(stack, {}) == LOCAL_PASSPHRASE
    assert passphrase_for(stack, {"PULUMI_CONFIG_PASSPHRASE": "mine"}) is None  # yours wins


@pytest.mark.parametrize("stack", ["dev", "staging", "prod", "canary"])
def test_other_stacks_never_get_the_public_passphrase(stack):
    assert passphrase_for(stack, {}) is None
    problem = unsafe_state_or_secrets(stack, {"PULUMI_CONFIG_PASSPHRASE": LOCAL_PASSPHRASE}, PROJECT)
    assert problem is not None
    assert f"stack {stack!r}" in problem and "public passphrase" in problem and "Fix:" in problem


def test_the_public_passphrase_in_a_file_is_refused_too(tmp_path):
    secret = tmp_path / "passphrase"
    secret.write_text(LOCAL_PASSPHRASE + "\n")
    assert unsafe_state_or_secrets("prod", {"PULUMI_CONFIG_PASSPHRASE_FILE": str(secret)}, PROJECT)


def test_a_kms_secrets_provider_makes_a_stray_passphrase_irrelevant():
    environ = {"PULUMI_CONFIG_PASSPHRASE": LOCAL_PASSPHRASE}
    assert unsafe_state_or_secrets("prod", environ, PROJECT, "awskms://alias/agents") is None
    assert unsafe_state_or_secrets("prod", environ, PROJECT, "passphrase") is not None


@pytest.mark.parametrize("backend", [
    f"file://{PROJECT}/.pulumi-state",
    f"file://{PROJECT}/.pulumi-state/",
    "file://.pulumi-state",
    f"file://{PROJECT}/stacks/../.pulumi-state?no_legacy_url_encoding=true",
])
def test_other_stacks_refuse_the_project_state_directory(backend):
    problem = unsafe_state_or_secrets("staging", {"PULUMI_BACKEND_URL": backend, "PULUMI_CONFIG_PASSPHRASE": "x"},
                                      PROJECT)
    assert problem is not None and ".pulumi-state/" in problem and "pulumi login" in problem


@pytest.mark.parametrize("backend", ["s3://agents-state", "file:///var/lib/pulumi-state", "https://api.pulumi.com"])
def test_other_stacks_accept_a_backend_of_their_own(backend):
    assert unsafe_state_or_secrets("prod", {"PULUMI_BACKEND_URL": backend, "PULUMI_CONFIG_PASSPHRASE": "x"},
                                   PROJECT) is None


def test_secrets_provider_is_read_from_the_stack_file(tmp_path):
    stack_file = tmp_path / "Pulumi.prod.yaml"
    stack_file.write_text("secretsprovider: awskms://alias/agents?region=eu-west-1\nconfig: {}\n")
    assert secrets_provider(stack_file) == "awskms://alias/agents?region=eu-west-1"
    stack_file.write_text("encryptionsalt: v1:abc\nconfig: {}\n")
    assert secrets_provider(stack_file) is None
    assert secrets_provider(tmp_path / "missing.yaml") is None
