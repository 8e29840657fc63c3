"""`python -m bench NAME [ARGS...]`: run the benchmark module bench/NAME.py (its `main(argv)`).

Any module in bench/ that defines `main(argv) -> int` is a benchmark; nothing to register.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    names = []
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"bench.{info.name}")
        except ImportError:
            continue
        if callable(getattr(module, "main", None)):
            names.append(info.name)
    return sorted(names)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0].startswith("_"):
        print(f"usage: python -m bench NAME [ARGS...]\nbenchmarks: {', '.join(available())}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench.{name}":
            raise
        print(f"no benchmark {name!r}; benchmarks: {', '.join(available())}", file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
