"""`pulumi-language-python`: the Pulumi CLI's Python language host, on the Python SDK's gRPC stubs.

The stock host is a Go binary (module sdk/python/cmd/pulumi-language-python/v3) that the module
proxy this project builds from does not serve. tools/build-toolchain.sh installs this file beside
the CLI it builds, so a bare `pulumi preview/up/destroy/refresh -s <stack>`, `pulumi stack output`,
`pulumi about`, `pulumi install` and `--policy-pack` work as with a stock install.

Protocol (pulumi/sdk/go/common/resource/plugin/langruntime_plugin.go and plugin.go): the CLI
starts the host with flags and the engine's address as the last positional argument, reads the
port it prints on stdout, then calls the `LanguageRuntime` service. Like the stock host:

- `Run` executes the program in a fresh interpreter of the project's virtualenv (`runtime.options
  .virtualenv` in Pulumi.yaml, relative to the project root), this file in `exec` mode: it
  configures `pulumi.runtime` from the request and runs `__main__.py` (or `main`) inside the stack.
  A `RunError` (or any exception) is logged through the engine and the run ends with `bail`, so the
  CLI prints the program's own message once. Exit code 32 means "already reported", as upstream.
- `RunPlugin` runs a plugin written in Python; for a policy pack that is `python -m pulumi.policy
  <engine> <pack dir>` in the pack's virtualenv (`../.venv` for policies/), streaming its output.
- `GetRequiredPackages`/`GetRequiredPlugins` list the resource plugins the virtualenv's packages
  declare (`pulumi-plugin.json`), as upstream does, but only those already installed as plugins:
  nothing can be downloaded here, and a provider SDK the program never uses (pulumi-docker on a
  stack without image builds) must not make every `pulumi up` try to fetch its plugin. A provider
  the program does use is still loaded on demand, with the engine's own error if it is missing.
- `InstallDependencies` creates the virtualenv when missing and `pip install -r requirements.txt`,
  streaming pip's output; `GetProgramDependencies` is `pip list`; `About` names the interpreter.

Where this deliberately differs: no toolchains other than pip (no uv/poetry), no type checker
option, no debugger attach, no code generation (`GenerateProgram` etc. answer UNIMPLEMENTED).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

# Exit code of a program whose error was already reported through the engine (upstream's value).
BAIL_EXIT_CODE = 32
VERSION = "3.260.0"


# --- what runs in the program's interpreter --------------------------------------------------


def exec_program(argv: list[str]) -> int:
    """Run a Pulumi program (`exec` mode, in the project's virtualenv interpreter)."""
    import asyncio
    import logging
    import runpy
    import traceback

    import pulumi
    from pulumi import runtime

    parser = argparse.ArgumentParser(prog="pulumi-language-python exec")
    for name in ("monitor", "engine", "project", "stack", "pwd", "root", "organization"):
        parser.add_argument(f"--{name}", default="")
    parser.add_argument("--dry-run", default="false")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("program")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    if args.pwd:
        os.chdir(args.pwd)
    program = Path(args.program)
    program_dir = program if program.is_dir() else program.parent
    # Like `python <dir>`: the program's directory first on sys.path, so it imports its modules.
    sys.path.insert(0, str(program_dir.resolve()))
    sys.argv = [str(program), *args.args]
    runtime.reset_options(
        project=args.project,
        stack=args.stack,
        root_directory=args.root or None,
        parallel=args.parallel,
        engine_address=args.engine,
        monitor_address=args.monitor,
        preview=args.dry_run == "true",
        organization=args.organization or "organization",
    )
    config = runtime.get_config_env()
    secret_keys = runtime.get_config_secret_keys_env()
    if config:
        runtime.set_all_config(config, secret_keys or None)

    # Unobserved failed tasks are reported through the engine already (as upstream's exec shim).
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.set_default_executor(futures.ThreadPoolExecutor(max_workers=max(args.parallel, 1) * 4))

    def run() -> None:
        runpy.run_path(str(program), run_name="__main__")

    try:
        loop.run_until_complete(runtime.run_in_stack(run))
    except pulumi.RunError as exc:
        pulumi.log.error(str(exc))
        return BAIL_EXIT_CODE
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001  (a bug in the program: its traceback is the report)
        pulumi.log.error("Program failed with an unhandled exception:\n" + traceback.format_exc())
        return BAIL_EXIT_CODE
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


# --- the host ----------------------------------------------------------------------------------


class HostError(Exception):
    """A request the host cannot serve, with the message the user reads."""


def _options(info: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(info.options) if info.HasField("options") else {}


def virtualenv(info: Any) -> Path | None:
    """The virtualenv `runtime.options.virtualenv` names, relative to the project (or pack) root."""
    name = _options(info).get("virtualenv")
    if not name:
        return None
    path = Path(name)
    return path if path.is_absolute() else Path(info.root_directory) / path


def python_for(info: Any) -> str:
    """The interpreter a program or plugin runs with: its virtualenv's, else `python3`."""
    venv = virtualenv(info)
    if venv is None:
        return os.environ.get("PULUMI_PYTHON_CMD", "python3")
    python = venv / "bin" / "python"
    if not python.exists():
        raise HostError(
            f"The virtualenv {venv} (runtime.options.virtualenv in {info.root_directory}) does not exist: "
            "create it with `make .venv/.installed` (or `pulumi install`)."
        )
    return str(python)


def entry_point(info: Any) -> str:
    program_dir = Path(info.program_directory or info.root_directory or ".")
    entry = info.entry_point or "."
    return str(program_dir if entry == "." else program_dir / entry)


def site_packages(python: str) -> list[Path]:
    out = subprocess.run(
        [python, "-c", "import json, site, sys; print(json.dumps(site.getsitepackages()))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return [Path(p) for p in json.loads(out)]


def declared_plugins(python: str) -> list[dict[str, Any]]:
    """The resource plugins the interpreter's packages declare in `pulumi-plugin.json`."""
    plugins = []
    for directory in site_packages(python):
        for manifest in sorted(directory.glob("*/pulumi-plugin.json")):
            try:
                data = json.loads(manifest.read_text())
            except (OSError, ValueError):
                continue
            if data.get("resource") and data.get("name"):
                plugins.append({"name": data["name"], "version": data.get("version", ""),
                                "server": data.get("server", "")})
    return plugins


def plugin_installed(name: str, version: str) -> bool:
    home = Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    version = version.removeprefix("v")
    return (home / "plugins" / f"resource-{name}-v{version}" / f"pulumi-resource-{name}").exists()


def _pump(stream: Any, key: str, out: queue.Queue[tuple[str, bytes | None]]) -> None:
    for chunk in iter(lambda: stream.readline(), b""):
        out.put((key, chunk))
    out.put((key, None))


def stream_process(cmd: list[str], cwd: str | None, env: dict[str, str] | None,
                   context: Any = None) -> Iterator[tuple[str, bytes | int]]:
    """Start `cmd` and yield ("stdout"|"stderr", line) as it prints, then ("exit", code).
    A cancelled RPC (the CLI ends the plugin) terminates the process."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    if context is not None:
        context.add_callback(lambda: _terminate(proc))
    lines: queue.Queue[tuple[str, bytes | None]] = queue.Queue()
    for key, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        threading.Thread(target=_pump, args=(stream, key, lines), daemon=True).start()
    open_streams = 2
    try:
        while open_streams:
            key, chunk = lines.get()
            if chunk is None:
                open_streams -= 1
            else:
                yield key, chunk
        yield "exit", proc.wait()
    finally:
        _terminate(proc)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def make_servicer(engine_address: str) -> Any:
    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

    class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
        """The `LanguageRuntime` service for Python programs and policy packs."""

        def __init__(self) -> None:
            self.engine_address = engine_address
            self.children: set[subprocess.Popen[bytes]] = set()
            self.lock = threading.Lock()

        def _fail(self, context: Any, exc: HostError) -> Any:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))

        def Handshake(self, request: Any, context: Any) -> Any:
            if request.engine_address:
                self.engine_address = request.engine_address
            return language_pb2.LanguageHandshakeResponse()

        def GetPluginInfo(self, request: Any, context: Any) -> Any:
            return plugin_pb2.PluginInfo(version=VERSION)

        def _required(self, info: Any) -> list[dict[str, Any]]:
            try:
                python = python_for(info)
            except HostError:
                return []  # `Run` reports the missing virtualenv with its fix
            return [p for p in declared_plugins(python) if plugin_installed(p["name"], p["version"])]

        def GetRequiredPlugins(self, request: Any, context: Any) -> Any:
            return language_pb2.GetRequiredPluginsResponse(plugins=[
                plugin_pb2.PluginDependency(name=p["name"], kind="resource", version=p["version"], server=p["server"])
                for p in self._required(request.info)
            ])

        def GetRequiredPackages(self, request: Any, context: Any) -> Any:
            return language_pb2.GetRequiredPackagesResponse(packages=[
                plugin_pb2.PackageDependency(name=p["name"], kind="resource", version=p["version"], server=p["server"])
                for p in self._required(request.info)
            ])

        def Run(self, request: Any, context: Any) -> Any:
            info = request.info
            try:
                python = python_for(info)
            except HostError as exc:
                return language_pb2.RunResponse(error=str(exc))
            cmd = [python, "-u", str(Path(__file__).resolve()), "exec",
                   "--monitor", request.monitor_address, "--engine", self.engine_address,
                   "--project", request.project, "--stack", request.stack, "--pwd", request.pwd,
                   "--root", info.root_directory, "--organization", request.organization,
                   "--dry-run", "true" if request.dryRun else "false",
                   "--parallel", str(request.parallel or 1), entry_point(info), *request.args]
            env = dict(os.environ)
            env["PULUMI_CONFIG"] = json.dumps(dict(request.config))
            env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
            # The program's output goes where the host's goes: the CLI shows it as the program's.
            # Its own session: a Ctrl-C (or the CLI ending the host's process group after a
            # failed preview) reaches the host, which ends the program quietly, never a
            # KeyboardInterrupt traceback in the middle of the engine's report.
            proc = subprocess.Popen(cmd, cwd=request.pwd or None, env=env, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            with self.lock:
                self.children.add(proc)
            context.add_callback(lambda: _terminate(proc))
            try:
                code = proc.wait()
            finally:
                with self.lock:
                    self.children.discard(proc)
            if code == 0:
                return language_pb2.RunResponse()
            if code == BAIL_EXIT_CODE:
                return language_pb2.RunResponse(bail=True)
            return language_pb2.RunResponse(error=f"Program exited with non-zero exit code: {code}")

        def RunPlugin(self, request: Any, context: Any) -> Iterator[Any]:
            info = request.info
            try:
                python = python_for(info)
            except HostError as exc:
                yield language_pb2.RunPluginResponse(stderr=f"{exc}\n".encode())
                yield language_pb2.RunPluginResponse(exitcode=1)
                return
            program = entry_point(info)
            if request.kind == "analyzer":
                # A policy pack: pulumi.policy takes the engine address and the pack's program.
                cmd = [python, "-u", "-m", "pulumi.policy", *request.args, program]
                cwd = info.program_directory or request.pwd
            else:
                cmd = [python, "-u", program, *request.args]
                cwd = request.pwd or info.program_directory
            env = dict(item.split("=", 1) for item in request.env if "=" in item) or dict(os.environ)
            for key, value in stream_process(cmd, cwd, env, context):
                if key == "exit":
                    yield language_pb2.RunPluginResponse(exitcode=int(value))
                elif key == "stdout":
                    yield language_pb2.RunPluginResponse(stdout=value)
                else:
                    yield language_pb2.RunPluginResponse(stderr=value)

        def InstallDependencies(self, request: Any, context: Any) -> Iterator[Any]:
            info = request.info
            venv = virtualenv(info)
            steps: list[list[str]] = []
            python = "python3"
            if venv is not None:
                python = str(venv / "bin" / "python")
                if not Path(python).exists():
                    steps.append([os.environ.get("PULUMI_PYTHON_CMD", "python3"), "-m", "venv", str(venv)])
            requirements = Path(info.root_directory or request.directory) / "requirements.txt"
            if requirements.exists():
                steps.append([python, "-m", "pip", "install", "--disable-pip-version-check", "-r", str(requirements)])
            for cmd in steps:
                yield language_pb2.InstallDependenciesResponse(stdout=f"$ {' '.join(cmd)}\n".encode())
                for key, value in stream_process(cmd, info.root_directory or None, None, context):
                    if key == "exit":
                        if value != 0:
                            context.abort(grpc.StatusCode.UNKNOWN, f"{' '.join(cmd)} exited {value}")
                    elif key == "stdout":
                        yield language_pb2.InstallDependenciesResponse(stdout=value)
                    else:
                        yield language_pb2.InstallDependenciesResponse(stderr=value)

        def GetProgramDependencies(self, request: Any, context: Any) -> Any:
            try:
                python = python_for(request.info)
            except HostError as exc:
                return self._fail(context, exc)
            cmd = [python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"]
            if not request.transitiveDependencies:
                cmd.append("--not-required")
            listed = subprocess.run(cmd, capture_output=True, text=True)
            if listed.returncode != 0:
                context.abort(grpc.StatusCode.UNKNOWN, f"pip list failed: {listed.stderr.strip()}")
            return language_pb2.GetProgramDependenciesResponse(dependencies=[
                language_pb2.DependencyInfo(name=d["name"], version=d["version"]) for d in json.loads(listed.stdout)
            ])

        def About(self, request: Any, context: Any) -> Any:
            try:
                python = python_for(request.info)
            except HostError as exc:
                return self._fail(context, exc)
            version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                                     capture_output=True, text=True, check=True).stdout.strip()
            venv = virtualenv(request.info)
            metadata = {"toolchain": "pip"}
            if venv is not None:
                metadata["virtualenv"] = str(venv)
            return language_pb2.AboutResponse(executable=python, version=version, metadata=metadata)

        def RuntimeOptionsPrompts(self, request: Any, context: Any) -> Any:
            return language_pb2.RuntimeOptionsResponse()

        def Template(self, request: Any, context: Any) -> Any:
            return language_pb2.TemplateResponse()

        def Cancel(self, request: Any, context: Any) -> Any:
            with self.lock:
                children = list(self.children)
            for proc in children:
                _terminate(proc)
            return empty_pb2.Empty()

    return LanguageHost()


def serve(argv: list[str]) -> int:
    import grpc
    from pulumi.runtime.proto import language_pb2_grpc

    # The CLI passes its own flags (-v=9, --logtostderr, --logflow, --tracing <endpoint>, -root=...)
    # before the engine address; only the last positional matters here.
    positional: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--tracing":
            skip = True
        elif not arg.startswith("-"):
            positional.append(arg)
    engine_address = positional[-1] if positional else ""

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)],
    )
    servicer = make_servicer(engine_address)
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)

    def stop(signum: int, frame: Any) -> None:
        servicer.Cancel(None, None)
        server.stop(grace=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.wait_for_termination()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["exec"]:
        return exec_program(argv[1:])
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
