"""Generate stacks/schema.json (editor validation of stack files) and the README's stack-config
reference from the pydantic models, or check that both are current (`--check`, used by tests).

    python tools/stack_schema.py           # rewrite both
    python tools/stack_schema.py --check   # exit 1 if either is stale
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "runtime")]

from pydantic import BaseModel  # noqa: E402

from components.config import PROJECT, TOP_LEVEL_KEYS, PlatformConfig  # noqa: E402

SCHEMA_PATH = ROOT / "stacks" / "schema.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- stack-config:begin -->", "<!-- stack-config:end -->"


def stack_file_schema() -> dict[str, Any]:
    model = PlatformConfig.model_json_schema(by_alias=True)
    defs = model.pop("$defs", {})
    properties = {f"{PROJECT}:{key}": model["properties"][key] for key in TOP_LEVEL_KEYS}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "agent-platform stack file (stacks/Pulumi.<stack>.yaml)",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": properties,
                "required": [f"{PROJECT}:{k}" for k in model.get("required", []) if k != "stack"],
                # Keys of other namespaces (pulumi:, kubernetes:) belong to Pulumi and providers.
                "patternProperties": {f"^(?!{PROJECT}:)": {}},
                "additionalProperties": False,
            },
            "encryptionsalt": {"type": "string"},
            "secretsprovider": {"type": "string"},
        },
        "$defs": defs,
    }


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if name == "stack":
            continue
        key = field.alias or name
        path = f"{prefix}{key}"
        annotation = field.annotation
        nested = _model_of(annotation)
        if field.is_required():
            default = "required"
        elif isinstance(field.default, BaseModel):
            default = "see below"
        else:
            default = f"`{json.dumps(_plain(field.default), default=str)}`"
        type_name = _type_name(annotation)
        from agent_runtime.config import Duration

        if Duration in field.metadata:
            type_name = "seconds or duration (`5m`, `1h30m`)"
        rows.append(f"| `{path}` | {type_name} | {default} |")
        if nested is not None:
            rows.extend(_rows(nested, f"{path}{'[].' if 'tuple' in str(annotation) else '.'}"))
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return "{...}"
    if isinstance(value, tuple):
        return list(value)
    return value


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _type_name(annotation: Any) -> str:
    if _is_duration(annotation):
        optional = type(None) in getattr(annotation, "__args__", ())
        return "seconds or duration (`5m`, `1h30m`)" + (" \\| None" if optional else "")
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    for noise in ("typing.", "components.config.", "agent_runtime.config.", "Annotated[", "NoneType"):
        text = text.replace(noise, "" if noise != "NoneType" else "None")
    text = re.sub(r", FieldInfo\(.*\)\]", "", text)
    return text.replace("|", "\\|")


def _is_duration(annotation: Any) -> bool:
    """A field annotated with agent_runtime.config.Duration (seconds, or Prometheus' form)."""
    from agent_runtime.config import Duration

    if Duration in (getattr(annotation, "__metadata__", ()) or ()):
        return True
    return any(_is_duration(arg) for arg in getattr(annotation, "__args__", ()) or ())


def reference_markdown() -> str:
    lines = ["| key (under `agent-platform:`) | type | default |", "|---|---|---|"]
    lines += _rows(PlatformConfig, "")
    return "\n".join(lines)


def main(check: bool) -> int:
    schema = json.dumps(stack_file_schema(), indent=2, sort_keys=True) + "\n"
    readme = README.read_text()
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    new_readme = readme[:start] + "\n" + reference_markdown() + "\n" + readme[end:]
    stale = []
    if not SCHEMA_PATH.exists() or SCHEMA_PATH.read_text() != schema:
        stale.append(str(SCHEMA_PATH.relative_to(ROOT)))
    if readme != new_readme:
        stale.append("README.md (stack-config reference)")
    if check:
        if stale:
            print(f"stale: {', '.join(stale)}; run `python tools/stack_schema.py`", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(schema)
    README.write_text(new_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
