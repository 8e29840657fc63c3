"""`python -m agent_runtime <command> ...`: one entry point for every runtime command.

Commands come from a registry of modules: each module that exists and defines
`register(subparsers)` adds its own subcommands (`gateway` here; `backup`, `restore`, `verify`
from `recovery`; `alerts` from `alerts`; `agent`, the reference agent). Each subcommand sets `func(args) -> exit code`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that may contribute subcommands; a module that is not installed is skipped.
COMMAND_MODULES = (
    "agent_runtime.gateway", "agent_runtime.recovery", "agent_runtime.alerts", "agent_runtime.agent",
    "agent_runtime.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent_runtime", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not part of this build
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
