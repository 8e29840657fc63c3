"""tools/pipeline/__main__.py: requests that cannot be carried out end with one message and
exit status 2, before any engine run; a change that touches no stack previews nothing."""

from __future__ import annotations

import shutil

import pytest

from tests.stacks import ROOT
from tools.pipeline.__main__ import main


@pytest.fixture
def project(tmp_path):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    (["deploy", "qa"], "unknown stack 'qa' (stacks in"),
    (["drift", "../etc"], "unknown stack '../etc'"),
    (["promote", "dev", "dev"], "FROM and TO are the same stack"),
    (["preview", "--stack", "dev", "--stack", "nope"], "unknown stack 'nope'"),
])
def test_bad_requests_exit_2_with_one_message(project, capsys, argv, message):
    assert main(["--work-dir", str(project), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_broken_source_file_is_named_before_the_engine_runs(project, capsys):
    (project / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  agent-platform:clusters: [\n")
    assert main(["--work-dir", str(project), "promote", "dev", "staging"]) == 2
    assert "stacks/Pulumi.dev.yaml: not valid YAML (line" in capsys.readouterr().err


def test_a_work_dir_without_a_project(tmp_path, capsys):
    assert main(["--work-dir", str(tmp_path), "drift", "dev"]) == 2
    assert "has no Pulumi.yaml" in capsys.readouterr().err


def test_a_change_that_touches_no_stack_previews_nothing(project, capsys, monkeypatch):
    from tools.pipeline import selection

    monkeypatch.setattr(selection, "changed_paths", lambda work_dir, base: ["README.md", "tests/x.py"])
    assert main(["--work-dir", str(project), "preview", "--changed-since", "main"]) == 0
    assert "No stack is touched by this change" in capsys.readouterr().out


def test_a_bad_base_ref_is_a_bad_request(project, capsys):
    assert main(["--work-dir", str(project), "preview", "--changed-since", "no-such-ref"]) == 2
    assert "git merge-base no-such-ref HEAD failed" in capsys.readouterr().err
