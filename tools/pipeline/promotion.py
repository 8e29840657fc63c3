"""Promotion: copy what travels from one stack file into the next, and nothing else.

What travels is what was tested in the source environment and must reach the next one
unchanged: the image references (digests, when pinned so) and the runtime's behaviour (each
cluster's capabilities and longest run; the gateway's default deadline; the balancer, breaker,
retry, outlier, health-check, timeout and capability settings of each route the source declares).
What stays is everything that sizes, places or exposes the environment: namespace, kube context,
replicas, resources, autoscaling, disruption budgets, env and secret_env, a route's path prefix,
monitoring, backups, quota. The table is TRAVELLING.

A field the source leaves to its default travels as that default (the key is removed from the
target). A route the source does not declare is left alone: the source then ran the default
route, and silently dropping, say, the target's consistent hashing would be a change nobody asked for.

The target file is edited in place with ruamel.yaml's round-trip mode, so its comments, key
order and flow-style lists stay as they were; a value that does not change is not touched.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

PREFIX = "agent-platform:"

# Clusters are matched by `name`, routes by their effective name (`name`, else `cluster`).
CLUSTER_FIELDS = ("image", "capabilities", "max_run_seconds")
GATEWAY_FIELDS = ("image", "default_deadline_seconds")
ROUTE_FIELDS = ("required_capabilities", "timeout_seconds", "balancer", "breaker", "retry", "outlier",
                "health_check")
TRAVELLING = tuple(
    [f"clusters[].{f}" for f in CLUSTER_FIELDS] + [f"gateway.{f}" for f in GATEWAY_FIELDS]
    + [f"routes[].{f}" for f in ROUTE_FIELDS]
)


class PromotionError(Exception):
    """A stack file that cannot be promoted from or into; the message names file and key."""


@dataclasses.dataclass(frozen=True)
class Change:
    """One travelling value that promotion changes in the target file."""

    path: str  # clusters.workers.image, gateway.image, routes
    old: Any
    new: Any


@dataclasses.dataclass
class Promotion:
    """The target file's new text, what changed in it, and what was deliberately left alone."""

    text: str
    changes: list[Change]
    notes: list[str]


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, order and styles survive
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line the user wrote on one line
    return yaml


def _plain(node: Any) -> Any:
    """A ruamel node as plain Python, for comparisons and reports."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _config(document: Any, source: str) -> Any:
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise PromotionError(f"{source}: no `config:` mapping (is this a Pulumi stack file?)")
    return document["config"]


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise PromotionError(f"{path}: cannot read: {err.strerror}") from None


def parse(text: str, source: str) -> Any:
    """A stack file's text as a round-trip document; bad YAML is one PromotionError."""
    try:
        document = _yaml().load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise PromotionError(f"{source}: not valid YAML{where}: {problem}") from None
    _config(document, source)
    return document


def _named(config: Any, key: str, source: str, required: bool = True) -> dict[str, Any]:
    """The items of a list of mappings by name (routes: `name`, else `cluster`)."""
    full = PREFIX + key
    items = config.get(full)
    if items is None and not required:
        return {}
    if not isinstance(items, list):
        raise PromotionError(f"{source}: {full} must be a list")
    by_name: dict[str, Any] = {}
    for index, item in enumerate(items):
        name = None
        if isinstance(item, dict):
            name = item.get("name") if key == "clusters" else (item.get("name") or item.get("cluster"))
        if not isinstance(name, str):
            what = "name" if key == "clusters" else "cluster"
            raise PromotionError(f"{source}: {full}[{index}].{what} is required")
        if name in by_name:
            raise PromotionError(f"{source}: {full}: two items are named {name!r}")
        by_name[name] = item
    return by_name


def _mapping(config: Any, key: str, source: str) -> Any:
    value = config.get(PREFIX + key)
    if not isinstance(value, dict):
        raise PromotionError(f"{source}: {PREFIX}{key} must be a mapping")
    return value


def _copy_field(src: Any, dst: Any, field: str, path: str, changes: list[Change]) -> None:
    if field in src:
        if field not in dst or _plain(dst[field]) != _plain(src[field]):
            changes.append(Change(path, _plain(dst.get(field)), _plain(src[field])))
            dst[field] = copy.deepcopy(src[field])
    elif field in dst:
        # The source relies on the default: so must the target.
        changes.append(Change(path, _plain(dst[field]), None))
        del dst[field]


def _indentation(text: str) -> dict[str, int]:
    """The block-sequence indentation the file uses (`key:` then `  - item` is offset 2), so
    that rewriting it moves no line that promotion did not change."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for above, line in zip(lines, lines[1:], strict=False):
        if above.rstrip().endswith(":") and line.lstrip().startswith("- "):
            offset = (len(line) - len(line.lstrip())) - (len(above) - len(above.lstrip()))
            if offset >= 0:
                return {"mapping": 2, "sequence": offset + 2, "offset": offset}
    return {"mapping": 2, "sequence": 2, "offset": 0}


def promote_text(source_text: str, target_text: str, source_name: str, target_name: str) -> Promotion:
    """Copy the travelling values of one stack file's text into another's."""
    return promote(parse(source_text, source_name), parse(target_text, target_name), source_name,
                   target_name, target_text)


def promote(source_doc: Any, target_doc: Any, source_name: str, target_name: str,
            target_text: str = "") -> Promotion:
    """Copy the travelling values of `source_doc` into `target_doc` (edited in place);
    `target_text` is the target's original text, whose indentation the result keeps."""
    src_config, dst_config = _config(source_doc, source_name), _config(target_doc, target_name)
    changes: list[Change] = []
    notes: list[str] = []
    src_clusters = _named(src_config, "clusters", source_name)
    dst_clusters = _named(dst_config, "clusters", target_name)
    for name, src in src_clusters.items():
        dst = dst_clusters.get(name)
        if dst is None:
            notes.append(
                f"cluster {name!r} is not declared in {target_name}: not promoted "
                "(its replicas and resources are the target's to choose; add it there first)"
            )
            continue
        for field in CLUSTER_FIELDS:
            _copy_field(src, dst, field, f"clusters.{name}.{field}", changes)
    for name in dst_clusters.keys() - src_clusters.keys():
        notes.append(f"cluster {name!r} exists only in {target_name}: left as it is")
    src_gateway, dst_gateway = (
        _mapping(src_config, "gateway", source_name),
        _mapping(dst_config, "gateway", target_name),
    )
    for field in GATEWAY_FIELDS:
        _copy_field(src_gateway, dst_gateway, field, f"gateway.{field}", changes)
    src_routes = _named(src_config, "routes", source_name, required=False)
    dst_routes = _named(dst_config, "routes", target_name, required=False)
    if not src_routes and dst_routes:
        notes.append(f"{source_name} declares no routes: the routes of {target_name} are left as they are")
    for name, src in src_routes.items():
        dst = dst_routes.get(name)
        if dst is None:
            notes.append(
                f"route {name!r} is not declared in {target_name}: not promoted "
                "(its path prefix is the target's to choose; add it there first)"
            )
            continue
        for field in ROUTE_FIELDS:
            _copy_field(src, dst, field, f"routes.{name}.{field}", changes)
    for name in dst_routes.keys() - src_routes.keys():
        if src_routes:
            notes.append(f"route {name!r} exists only in {target_name}: left as it is")
    buffer = io.StringIO()
    yaml = _yaml()
    yaml.indent(**_indentation(target_text))
    yaml.dump(target_doc, buffer)
    return Promotion(buffer.getvalue(), changes, notes)


def plain_values(document: Any) -> dict[str, Any]:
    """The `agent-platform:*` values without the prefix, as components.config reads them."""
    config = _plain(_config(document, "stack file"))
    return {k[len(PREFIX) :]: v for k, v in config.items() if k.startswith(PREFIX)}
