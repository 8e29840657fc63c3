"""Reading the shipped stack files the way the Pulumi engine hands them to the program."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("local", "dev", "staging", "prod", "node")
PREFIX = "agent-platform:"


def stack_values(stack: str) -> dict[str, Any]:
    """The `agent-platform:*` values of a stack file, keyed without the prefix."""
    config = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k[len(PREFIX):]: v for k, v in config.items() if k.startswith(PREFIX)}


def engine_config(values: dict[str, Any]) -> dict[str, str]:
    """Structured values arrive JSON-encoded and strings as they are, like the engine sends them."""
    return {PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
