"""tools/pulumi_language_python.py spoken to over gRPC, as the Pulumi CLI speaks to it.

The engine tier (tests/engine) runs it under the real CLI; these tests pin the calls one by one,
with no CLI and no engine: the port handshake, the answers a bare `pulumi about` and plugin
installation rely on, the streamed output and exit code of a plugin, and the error a missing
virtualenv gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import language_pb2, language_pb2_grpc

from tests.stacks import ROOT

HOST = ROOT / "tools" / "pulumi_language_python.py"
VENV = Path(sys.prefix)


@pytest.fixture
def pulumi_home(tmp_path) -> Path:
    """A PULUMI_HOME holding only the Kubernetes provider plugin (an empty file is enough)."""
    home = tmp_path / "pulumi-home"
    version = json.loads(next(Path(p) for p in sys.path if (Path(p) / "pulumi_kubernetes").is_dir())
                         .joinpath("pulumi_kubernetes", "pulumi-plugin.json").read_text())["version"]
    plugin = home / "plugins" / f"resource-kubernetes-v{version}"
    plugin.mkdir(parents=True)
    (plugin / "pulumi-resource-kubernetes").write_text("")
    return home


@pytest.fixture
def host(pulumi_home) -> Iterator[language_pb2_grpc.LanguageRuntimeStub]:
    """The host started the way the CLI starts it: flags, then the engine address; it prints its port."""
    proc = subprocess.Popen([sys.executable, "-u", str(HOST), "-v=3", "--logtostderr", "127.0.0.1:1"],
                            stdout=subprocess.PIPE, env={**os.environ, "PULUMI_HOME": str(pulumi_home)})
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield language_pb2_grpc.LanguageRuntimeStub(channel)
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def program(root: Path, virtualenv: str | None) -> language_pb2.ProgramInfo:
    options = struct_pb2.Struct()
    if virtualenv is not None:
        options.update({"toolchain": "pip", "virtualenv": virtualenv})
    return language_pb2.ProgramInfo(root_directory=str(root), program_directory=str(root), entry_point=".",
                                    options=options)


def test_about_names_the_virtualenv_interpreter(host, tmp_path):
    (tmp_path / ".venv").symlink_to(VENV)
    about = host.About(language_pb2.AboutRequest(info=program(tmp_path, ".venv")))
    assert about.executable == str(tmp_path / ".venv" / "bin" / "python")
    assert about.version == ".".join(map(str, sys.version_info[:3]))
    assert about.metadata["virtualenv"] == str(tmp_path / ".venv")
    assert host.GetPluginInfo(empty_pb2.Empty()).version


def test_required_packages_are_the_installed_provider_plugins_only(host, tmp_path):
    # pulumi-docker is in the virtualenv too, but its plugin is not installed: listing it would make
    # every `pulumi up` try (and fail) to download it.
    (tmp_path / ".venv").symlink_to(VENV)
    info = program(tmp_path, ".venv")
    packages = host.GetRequiredPackages(language_pb2.GetRequiredPackagesRequest(info=info)).packages
    assert [(p.name, p.kind) for p in packages] == [("kubernetes", "resource")]
    plugins = host.GetRequiredPlugins(language_pb2.GetRequiredPluginsRequest(info=info)).plugins
    assert [p.name for p in plugins] == ["kubernetes"]


def test_program_dependencies_come_from_the_virtualenv(host, tmp_path):
    (tmp_path / ".venv").symlink_to(VENV)
    request = language_pb2.GetProgramDependenciesRequest(info=program(tmp_path, ".venv"), transitiveDependencies=True)
    names = {d.name.lower().replace("_", "-") for d in host.GetProgramDependencies(request).dependencies}
    assert {"pulumi", "pulumi-kubernetes", "grpcio"} <= names


def test_run_without_its_virtualenv_says_how_to_create_it(host, tmp_path):
    response = host.Run(language_pb2.RunRequest(info=program(tmp_path, ".venv"), project="p", stack="s",
                                                pwd=str(tmp_path)))
    assert "does not exist" in response.error and "make .venv/.installed" in response.error


def test_run_plugin_streams_output_then_the_exit_code(host, tmp_path):
    (tmp_path / ".venv").symlink_to(VENV)
    (tmp_path / "__main__.py").write_text(
        "import sys\nprint('port 4242', flush=True)\nprint('args', sys.argv[1:], file=sys.stderr)\nsys.exit(3)\n"
    )
    request = language_pb2.RunPluginRequest(info=program(tmp_path, ".venv"), pwd=str(tmp_path), kind="resource",
                                            args=["--flag", "127.0.0.1:1"], env=[f"PATH={os.environ['PATH']}"])
    stdout, stderr, codes = b"", b"", []
    for message in host.RunPlugin(request):
        kind = message.WhichOneof("output")
        if kind == "stdout":
            stdout += message.stdout
        elif kind == "stderr":
            stderr += message.stderr
        else:
            codes.append(message.exitcode)
    assert stdout == b"port 4242\n"
    assert b"['--flag', '127.0.0.1:1']" in stderr
    assert codes == [3]


def test_install_dependencies_streams_pip_and_fails_with_it(host, tmp_path):
    (tmp_path / ".venv").symlink_to(VENV)
    (tmp_path / "requirements.txt").write_text("no-such-package-agent-platform==0.0.0 ; python_version < '3'\n")
    request = language_pb2.InstallDependenciesRequest(info=program(tmp_path, ".venv"), directory=str(tmp_path))
    out = b"".join(m.stdout + m.stderr for m in host.InstallDependencies(request))
    assert b"pip install" in out and b"Ignoring no-such-package-agent-platform" in out

    (tmp_path / "requirements.txt").write_text("--no-index\nno-such-package-agent-platform==0.0.0\n")
    with pytest.raises(grpc.RpcError) as caught:
        b"".join(m.stdout + m.stderr for m in host.InstallDependencies(request))
    assert "exited 1" in caught.value.details()
