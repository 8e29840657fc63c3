"""The `gateway` command: load the config, set up JSON logging, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from ..access_log import AccessLog
from ..config import ConfigError, RuntimeConfig, load_runtime_config
from .app import Gateway

__all__ = ["main", "register", "run", "setup_logging"]

log = logging.getLogger("agent_runtime.gateway")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == "agent_runtime.access":
            return record.getMessage()
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("agent_runtime")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    import uvloop

    return uvloop.new_event_loop


async def _serve(
    config: RuntimeConfig, path: str, host: str | None, port: int | None, access: bool, reuse_port: bool = False
) -> None:
    gateway = Gateway(config, config_path=path, access_log=AccessLog() if access else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await gateway.start(host, port, reuse_port=reuse_port)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await gateway.stop()


def run(
    path: str, host: str | None = None, port: int | None = None, access_log_enabled: bool = True, workers: int = 1
) -> int:
    """Load the config (one clear message and exit code 2 when it is bad) and serve.

    `workers` > 1: that many processes share both ports through SO_REUSEPORT; the kernel spreads
    new connections over them. Each worker balances, breaks and ejects on its own view (its own
    in-flight counts, EWMA, breaker windows, retry budget), as N gateway replicas would, and serves
    its own /metrics: Prometheus sums the workers' counters like replicas'.
    """
    try:
        config = load_runtime_config(path)
    except ConfigError as exc:
        print(f"agent_runtime gateway: invalid config: {exc}", file=sys.stderr)
        return 2
    if workers > 1:
        return _run_workers(path, host, port, access_log_enabled, workers)
    return _run_one(config, path, host, port, access_log_enabled, reuse_port=False)


def _run_workers(path: str, host: str | None, port: int | None, access: bool, workers: int) -> int:
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            config = load_runtime_config(path)
            os._exit(_run_one(config, path, host, port, access, reuse_port=True))
        children.append(pid)

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    for child in children:
        _, status = os.waitpid(child, 0)
        worst = max(worst, os.waitstatus_to_exitcode(status) & 0xFF)
    return worst


def _run_one(config: RuntimeConfig, path: str, host: str | None, port: int | None, access: bool, reuse_port: bool) -> int:
    setup_logging()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(config, path, host, port, access, reuse_port))
    except ConfigError as exc:
        print(f"agent_runtime gateway: invalid config: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"agent_runtime gateway: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0


def register(subparsers: Any) -> None:
    """Add the `gateway` command to the CLI (see agent_runtime.__main__)."""
    p = subparsers.add_parser("gateway", help="run the HTTP gateway")
    p.add_argument("--config", required=True, help="runtime config file (JSON)")
    p.add_argument("--host", default=None, help="override gateway.host")
    p.add_argument("--port", type=int, default=None, help="override gateway.port")
    p.add_argument("--no-access-log", action="store_true", help="do not write access log lines")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes sharing the ports with SO_REUSEPORT (one per core)")
    p.set_defaults(func=lambda a: run(a.config, a.host, a.port, not a.no_access_log, max(1, a.workers)))


def main(argv: list[str] | None = None) -> int:
    from ..__main__ import main as cli_main

    return cli_main(["gateway", *(argv or [])])
