"""`python -m agent_runtime alerts`: a standalone evaluator over /metrics URLs and textfiles.

Evaluate alert rules against /metrics URLs and textfiles and notify a webhook, for stacks without
Prometheus (or to watch several gateway replicas from one place).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..config import AlertingConfig, ConfigError, load_json_config
from .evaluator import AlertEvaluator
from .rules import FIRING
from .sources import DnsSource, FileSource, HttpSource, MetricsSource

__all__ = ["main", "register"]


def _alerting_section(raw: Any) -> Any:
    # Either the gateway's runtime.json (alerts under "alerts") or an AlertingConfig on its own.
    return raw.get("alerts", {}) if isinstance(raw, dict) and "routes" in raw else raw


def _load_alerting(path: str) -> AlertingConfig:
    return load_json_config(path, AlertingConfig, _alerting_section)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def register(subparsers: Any) -> None:
    """Add `alerts` to `python -m agent_runtime`'s subcommands."""
    p = subparsers.add_parser(
        "alerts",
        help="evaluate alert rules against /metrics URLs and notify a webhook (stacks without Prometheus)",
        description=(__doc__ or "").split("\n\n")[1].strip(),
    )
    p.add_argument("--config", required=True, help="runtime.json or an AlertingConfig JSON file")
    p.add_argument("--metrics-url", action="append", default=[], help="a /metrics URL to scrape (repeatable)")
    p.add_argument(
        "--metrics-dns", action="append", default=[], type=_host_port, metavar="HOST:PORT",
        help="scrape /metrics on every address HOST resolves to, resolved at each evaluation "
        "(a headless Service: every ready pod; repeatable)",
    )
    p.add_argument("--metrics-file", action="append", default=[], help="a textfile to read (repeatable)")
    p.add_argument("--webhook-url", help="overrides webhook_url from the config")
    p.add_argument("--once", action="store_true", help="evaluate once and exit (status 1 if anything fires)")
    p.set_defaults(func=_cmd_alerts)


def _cmd_alerts(args: argparse.Namespace) -> int:
    try:
        config = _load_alerting(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.webhook_url:
        config = config.model_copy(update={"webhook_url": args.webhook_url})
    sources: list[MetricsSource] = [HttpSource(u) for u in (*config.metrics_urls, *args.metrics_url)]
    sources += [DnsSource(host, port) for host, port in args.metrics_dns]
    sources += [FileSource(f) for f in args.metrics_file]
    if not sources:
        print("alerts: no metrics source (give --metrics-url, --metrics-dns or metrics_urls in the config)",
              file=sys.stderr)
        return 2

    async def main() -> int:
        evaluator = AlertEvaluator(config, sources=sources)
        try:
            if args.once:
                await evaluator.evaluate_once()
                firing = [a for a in evaluator.alerts() if a.state == FIRING]
                for a in firing:
                    print(json.dumps({"alert": a.labels, "value": a.value}))
                return 1 if firing else 0
            await evaluator.run()
            return 0
        finally:
            await evaluator.close()

    return asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent_runtime.alerts")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["alerts", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)
